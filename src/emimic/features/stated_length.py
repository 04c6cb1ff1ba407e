"""The length a WAV's or an MP3's own header states, read from the file's first bytes.

FFmpeg cannot tell: it clamps a WAV's length to the bytes the file holds, and it reports an MP3's length from the
frame count of its Xing, Info or VBRI header only while the file is no more than 1/16 larger than the header's byte
count says, estimating it from the first frame's bit rate past that (a trailing APEv2 tag with cover art, two MP3s
joined with ``cat``) and without a count alike. A header that states no length of its own (a streaming writer's
placeholder size, an RF64 file, an MP3 without a frame count) is not judged: a file cut short reads as a shorter
recording there.

Tags can also sit inside an MP3's stream (two files joined with ``cat``: the first one's ID3v1, Lyrics3 or APEv2 tag,
the second one's ID3v2 tag with its cover art): :func:`tag_spans` finds where, so that their bytes are not taken for
lost audio; :func:`frame_bytes` and :func:`ending_frame` tell a packet's frame from bytes FFmpeg read with it."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

# Data sizes a writer that could not seek back leaves in a WAV header (0, 0xFFFFFFFF; some write 2**31 - 4096, or, as
# sox does, that rounded down to whole sample frames: 0x7FFFEFFF for 24-bit mono): a size this large cannot be told
# from them, and no clip is gigabytes of audio.
_WAV_PLACEHOLDER_SIZE = 0x7FFFF000 - (1 << 16)
# An MP3's first frame follows its ID3v2 tag, perhaps after padding: a frame header is looked for this far.
_MP3_SEARCH_BYTES = 1 << 16
# Bytes from an MPEG audio frame's start to a Xing/Info header, by (MPEG-1, mono): 4 header bytes + the side info.
_XING_OFFSET = {(True, False): 36, (True, True): 21, (False, False): 21, (False, True): 13}
_VBRI_OFFSET = 36  # always 32 bytes after the 4-byte frame header
_VBRI_FRAMES = 14  # the frame count's offset in a VBRI header: after its tag, version, delay, quality and bytes
_XING_HAS_FRAMES = 0x1
# Bytes each optional Xing field takes, by its flag: frames, bytes, table of contents, quality. The LAME tag follows
# them: a 9-byte encoder name, then 12 bits of encoder delay and 12 of padding 21 bytes in, which FFmpeg trims.
_XING_FIELDS = ((0x1, 4), (0x2, 4), (0x4, 100), (0x8, 4))
_LAME_ENCODERS = (b"LAME", b"Lavf", b"Lavc")
_LAME_DELAY = 21
# Sample rates by the frame header's 2-bit index, for MPEG-1; MPEG-2 halves them and MPEG-2.5 quarters them.
_MPEG1_SAMPLE_RATES = (44100, 48000, 32000)
# Layer III bit rates (kb/s) by the frame header's 4-bit index, for MPEG-1 and for MPEG-2 and 2.5 (0: free format).
_MPEG1_KBITS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_KBITS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_ID3V1_BYTES = 128
# What may follow an ID3v1 tag inside an MP3: the next file's first frame (its 11 sync bits) or one of its tags, else
# the packet's end; its 3-byte signature alone turns up in random bytes (damage) about every 16 MB.
_AFTER_ID3V1 = (b"ID3", b"APETAGEX", b"LYRICS")
# A Lyrics3 tag sits right before an ID3v1 tag: a v2 one ends with its size (6 digits, counting from LYRICSBEGIN) and
# LYRICS200, a v1 one runs from LYRICSBEGIN to LYRICSEND, with at most 5100 bytes of lyrics between.
_LYRICS3V2_END, _LYRICS3V2_SIZE_DIGITS = b"LYRICS200", 6
_LYRICS3V1_BEGIN, _LYRICS3V1_END, _LYRICS3V1_MAX_BYTES = b"LYRICSBEGIN", b"LYRICSEND", 11 + 5100 + 9
# An APEv2 header or footer: its signature, version, size (the items and the footer), item count, flags, 8 reserved.
_APE_BYTES = 32
_APE_HAS_HEADER, _APE_IS_HEADER = 1 << 31, 1 << 29


def wav_seconds(path: Path) -> float | None:
    """Seconds of audio a RIFF WAVE header says its data chunk holds (its size over the fmt chunk's byte rate), when
    the file holds fewer bytes than that; None when it holds them all (a wrong byte rate must not refuse a whole file)
    or the header states no usable size: not RIFF WAVE (RF64, RIFX), no fmt chunk before the data, a placeholder."""
    with open(path, "rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        head = file.read(12)
        if head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return None
        byte_rate = 0
        while len(chunk := file.read(8)) == 8:
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"data":
                cut = file.tell() + size > file_size
                return size / byte_rate if cut and byte_rate and 0 < size < _WAV_PLACEHOLDER_SIZE else None
            if name == b"fmt " and size >= 12:
                fmt = file.read(12)
                byte_rate = struct.unpack_from("<I", fmt, 8)[0] if len(fmt) == 12 else 0  # nAvgBytesPerSec
                size -= 12
            file.seek(size + size % 2, 1)  # chunks are padded to an even size
    return None


class FrameCount(NamedTuple):
    """What an MP3's Xing, Info or VBRI header states of its length."""

    frames: int
    samples_per_frame: int
    trimmed: int  # samples: the encoder delay and padding
    sample_rate: int

    @property
    def seconds(self) -> float:
        """Seconds of audio: the frames times the samples per frame, less the encoder delay and padding a LAME tag
        states, over the sample rate of the frame carrying the header."""
        return max(self.frames * self.samples_per_frame - self.trimmed, 0) / self.sample_rate


def mp3_frame_count(path: Path) -> FrameCount | None:
    """What an MP3's Xing, Info or VBRI header states of its length, None without one or a frame count in it."""
    with open(path, "rb") as file:
        file.seek(_id3v2_size(file.read(10)))
        data = file.read(_MP3_SEARCH_BYTES)
    frame = _first_frame(data)
    if frame is None:
        return None
    version, mono = (data[frame + 1] >> 3) & 0b11, (data[frame + 3] >> 6) == 0b11
    xing, vbri = frame + _XING_OFFSET[version == 0b11, mono], frame + _VBRI_OFFSET
    trimmed = 0
    if data[xing:xing + 4] in (b"Xing", b"Info") and len(data) >= xing + 12:
        flags, frames = struct.unpack_from(">II", data, xing + 4)
        if not flags & _XING_HAS_FRAMES:
            return None
        lame = xing + 8 + sum(size for flag, size in _XING_FIELDS if flags & flag)
        if data[lame:lame + 4] in _LAME_ENCODERS and len(data) >= lame + _LAME_DELAY + 3:
            delay_and_padding = int.from_bytes(data[lame + _LAME_DELAY:lame + _LAME_DELAY + 3], "big")
            trimmed = (delay_and_padding >> 12) + (delay_and_padding & 0xFFF)
    elif data[vbri:vbri + 4] == b"VBRI" and len(data) >= vbri + _VBRI_FRAMES + 4:
        frames = struct.unpack_from(">I", data, vbri + _VBRI_FRAMES)[0]
    else:
        return None
    # MPEG-1 (version bits 11) frames hold 1152 samples; MPEG-2 (10) and 2.5 (00) ones 576.
    return FrameCount(frames, 1152 if version == 0b11 else 576, trimmed, _sample_rate(data[frame:frame + 4]))


def frame_bytes(header: bytes) -> int | None:
    """Bytes of the MPEG audio layer III frame whose header ``header`` begins with (its bit rate's over its sample
    rate's, and a padding byte when flagged), None when it is not one."""
    if len(header) < 4 or not _is_frame_header(header, 0):
        return None
    mpeg1 = (header[1] >> 3) & 0b11 == 0b11
    kbits = (_MPEG1_KBITS if mpeg1 else _MPEG2_KBITS)[header[2] >> 4]
    return (144 if mpeg1 else 72) * kbits * 1000 // _sample_rate(header) + ((header[2] >> 1) & 1)


def ending_frame(data: bytes) -> int | None:
    """Offset of the MPEG audio layer III frame that ends ``data`` (its header states the bytes left), None when none
    does."""
    return next((offset for offset in range(len(data) - 3)
                 if offset + (frame_bytes(data[offset:offset + 4]) or 0) == len(data)), None)


def _sample_rate(header: bytes) -> int:
    """The sample rate a frame header states: MPEG-1 (version bits 11) rates, halved for MPEG-2 (10), quartered for
    MPEG-2.5 (00)."""
    version = (header[1] >> 3) & 0b11
    return _MPEG1_SAMPLE_RATES[(header[2] >> 2) & 0b11] // {0b11: 1, 0b10: 2, 0b00: 4}[version]


def _id3v2_size(head: bytes) -> int:
    """Bytes of the ID3v2 tag that ``head`` (at least its first 10 bytes) opens, 0 without one: its size is four
    7-bit bytes, plus a 10-byte footer when flagged."""
    if head[:3] != b"ID3" or len(head) < 10 or 0xFF in head[3:5] or any(byte & 0x80 for byte in head[6:10]):
        return 0
    size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    return 10 + size + (10 if head[5] & 0x10 else 0)


class TagSpan(NamedTuple):
    """Where a tag lies in an MP3: file offsets, ``end`` excluded."""

    start: int
    end: int
    id3v2: bool  # FFmpeg reads the frame after an ID3v2 tag with it, in the packet it cannot decode


def tag_spans(data: bytes, offset: int) -> Iterator[TagSpan]:
    """The tags whose ID3v2 header, APEv2 header or footer, or ID3v1 header lies in ``data``, the bytes at ``offset``
    of an MP3 (an ID3v1 tag with the Lyrics3 tag before it); a span may reach past ``data`` (an ID3v2 tag's cover
    art), or before it (an APEv2 or Lyrics3 tag's)."""
    for at in _found(data, b"ID3"):
        if size := _id3v2_size(data[at:at + 10]):
            yield TagSpan(offset + at, offset + at + size, id3v2=True)
    for at in _found(data, b"APETAGEX"):
        if len(data) >= at + _APE_BYTES:
            size, _, flags = struct.unpack_from("<III", data, at + 12)
            if flags & _APE_IS_HEADER:  # a header states where the tag ends (its size counts the footer, not it)
                yield TagSpan(offset + at, offset + at + _APE_BYTES + size, id3v2=False)
            else:  # the footer every APEv2 tag ends with states where it starts
                end = offset + at + _APE_BYTES
                yield TagSpan(end - size - (_APE_BYTES if flags & _APE_HAS_HEADER else 0), end, id3v2=False)
    for at in _found(data, b"TAG"):
        if _ends_id3v1(data, at + _ID3V1_BYTES):
            yield TagSpan(offset + _lyrics3_start(data, at), offset + at + _ID3V1_BYTES, id3v2=False)


def _ends_id3v1(data: bytes, end: int) -> bool:
    """Whether an ID3v1 tag can end at ``end`` of ``data``: what follows is a frame, a tag, or nothing."""
    after = data[end:end + max(map(len, _AFTER_ID3V1))]
    is_frame = len(after) >= 2 and after[0] == 0xFF and after[1] & 0xE0 == 0xE0
    return end == len(data) or is_frame or after.startswith(_AFTER_ID3V1)


def _lyrics3_start(data: bytes, id3v1: int) -> int:
    """Where the Lyrics3 tag right before the ID3v1 tag at ``id3v1`` in ``data`` starts, ``id3v1`` without one."""
    before = data[:id3v1]
    size = before[-len(_LYRICS3V2_END) - _LYRICS3V2_SIZE_DIGITS:-len(_LYRICS3V2_END)]
    if before.endswith(_LYRICS3V2_END) and len(size) == _LYRICS3V2_SIZE_DIGITS and size.isdigit():
        return id3v1 - len(_LYRICS3V2_END) - _LYRICS3V2_SIZE_DIGITS - int(size)
    if before.endswith(_LYRICS3V1_END) and (begin := before.rfind(_LYRICS3V1_BEGIN, -_LYRICS3V1_MAX_BYTES)) >= 0:
        return begin
    return id3v1


def _found(data: bytes, signature: bytes) -> Iterator[int]:
    """Every offset of ``signature`` in ``data``."""
    at = data.find(signature)
    while at >= 0:
        yield at
        at = data.find(signature, at + 1)


def _first_frame(data: bytes) -> int | None:
    """Offset of the first MPEG audio layer III frame header in ``data``, None when there is none."""
    return next((offset for offset in range(len(data) - 3) if _is_frame_header(data, offset)), None)


def _is_frame_header(data: bytes, offset: int) -> bool:
    """Whether an MPEG audio layer III frame header starts at ``offset`` of ``data``: 11 sync bits, a valid version,
    bit rate (not free format) and sample rate."""
    b1, b2 = data[offset + 1], data[offset + 2]
    return (data[offset] == 0xFF and b1 & 0xE0 == 0xE0 and (b1 >> 3) & 0b11 != 0b01 and (b1 >> 1) & 0b11 == 0b01
            and b2 >> 4 not in (0, 0xF) and (b2 >> 2) & 0b11 != 0b11)
