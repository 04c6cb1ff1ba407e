"""Whether a WAV's or an MP3's own header states the recording's length, read from the file's first bytes.

FFmpeg cannot tell: it clamps a WAV's length to the bytes the file holds, and reports an MP3's length from the frame
count of its Xing, Info or VBRI header and, without one, estimated from the file's size alike. A header that states
no length of its own (a streaming writer's placeholder size, an RF64 file, an MP3 without a frame count) is not
judged: a file cut short reads as a shorter recording there.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

# Data sizes a writer that could not seek back leaves in a WAV header (0, 0xFFFFFFFF; some write 2**31 - 4096 or
# just under 2**32): a size this large cannot be told from them, and no clip is gigabytes of audio.
_WAV_PLACEHOLDER_SIZE = 0x7FFFF000
# An MP3's first frame follows its ID3v2 tag, perhaps after padding: a frame header is looked for this far.
_MP3_SEARCH_BYTES = 1 << 16
# Bytes from an MPEG audio frame's start to a Xing/Info header, by (MPEG-1, mono): 4 header bytes + the side info.
_XING_OFFSET = {(True, False): 36, (True, True): 21, (False, False): 21, (False, True): 13}
_VBRI_OFFSET = 36  # always 32 bytes after the 4-byte frame header
_XING_HAS_FRAMES = 0x1


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


def mp3_counts_frames(path: Path) -> bool:
    """Whether an MP3's first frame carries a Xing or Info header with a frame count, or a VBRI header: FFmpeg's
    duration then comes from that count, not from the size of the file."""
    with open(path, "rb") as file:
        file.seek(_id3v2_size(file.read(10)))
        data = file.read(_MP3_SEARCH_BYTES)
    frame = _first_frame(data)
    if frame is None:
        return False
    version, mono = (data[frame + 1] >> 3) & 0b11, (data[frame + 3] >> 6) == 0b11
    xing = frame + _XING_OFFSET[version == 0b11, mono]
    if data[xing:xing + 4] in (b"Xing", b"Info") and len(data) >= xing + 8:
        return bool(struct.unpack_from(">I", data, xing + 4)[0] & _XING_HAS_FRAMES)
    return data[frame + _VBRI_OFFSET:frame + _VBRI_OFFSET + 4] == b"VBRI"


def _id3v2_size(head: bytes) -> int:
    """Bytes of the ID3v2 tag that ``head`` (a file's first 10 bytes) opens, 0 without one: its size is four 7-bit
    bytes, plus a 10-byte footer when flagged."""
    if head[:3] != b"ID3" or len(head) < 10:
        return 0
    size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    return 10 + size + (10 if head[5] & 0x10 else 0)


def _first_frame(data: bytes) -> int | None:
    """Offset of the first MPEG audio layer III frame header in ``data`` (11 sync bits, a valid version, bit rate and
    sample rate), None when there is none."""
    for offset in range(len(data) - 3):
        b1, b2 = data[offset + 1], data[offset + 2]
        if (data[offset] == 0xFF and b1 & 0xE0 == 0xE0 and (b1 >> 3) & 0b11 != 0b01 and (b1 >> 1) & 0b11 == 0b01
                and b2 >> 4 not in (0, 0xF) and (b2 >> 2) & 0b11 != 0b11):
            return offset
    return None
