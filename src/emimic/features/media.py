"""Decode a video file once: 16 kHz mono float audio and RGB frames sampled at a fixed rate (PyAV).

Both streams are demuxed in a single pass over the container, so a clip is read once per run
however many extractors consume it. A missing or empty audio track is not an error: it is
recorded in :attr:`Media.audio_problem` and the audio extractors mask the clip. A file that
cannot be opened or decoded is a :class:`~emimic.errors.DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emimic.errors import DataError

SAMPLE_RATE = 16_000


@dataclass
class Media:
    """What :func:`decode` read from one file."""

    path: Path
    duration: float
    """Seconds: the container's duration (the longest stream)."""
    audio: np.ndarray | None = None
    """float32 ``(samples,)`` at :data:`SAMPLE_RATE`, mono, in [-1, 1]; ``None`` when absent."""
    audio_problem: str | None = None
    """Why :attr:`audio` is ``None`` (for the report), e.g. ``"no audio track"``."""
    frames: np.ndarray | None = None
    """uint8 ``(N, H, W, 3)`` RGB frames sampled at ``fps``; ``None`` when not requested or absent."""
    frame_times: np.ndarray | None = None
    """float64 ``(N,)`` presentation time of each frame in seconds from the stream start."""
    video_problem: str | None = None
    sample_rate: int = SAMPLE_RATE


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    # Even sizes keep swscale on its fast path for yuv420p input.
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def decode(
    path: str | Path,
    *,
    audio: bool = True,
    video: bool = True,
    fps: float = 5.0,
    max_side: int | None = 640,
    sample_rate: int = SAMPLE_RATE,
) -> Media:
    """Decode ``path``: audio resampled to ``sample_rate`` mono float32, frames at ``fps`` as RGB.

    Frames are picked by timestamp (the first frame at or after each multiple of ``1/fps``), so a
    variable-frame-rate file is sampled evenly; ``max_side`` bounds the larger frame side.
    """
    import av  # heavy; only extraction needs it

    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise DataError(f"{path}: cannot be opened as a video ({exc}).") from None
    with container:
        audio_stream = container.streams.audio[0] if audio and container.streams.audio else None
        video_stream = container.streams.video[0] if video and container.streams.video else None
        if video_stream is not None:
            # Decoding B-frames on several threads is the costliest part of the read.
            video_stream.thread_type = "AUTO"
        streams = [s for s in (audio_stream, video_stream) if s is not None]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        frames: list[np.ndarray] = []
        times: list[float] = []
        step = 1.0 / fps
        next_time = 0.0
        video_start: float | None = None
        try:
            for packet in container.demux(*streams) if streams else ():
                for frame in packet.decode():
                    if isinstance(frame, av.AudioFrame):
                        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
                        continue
                    if frame.time is None:
                        continue
                    if video_start is None:
                        video_start = frame.time
                    t = frame.time - video_start
                    if t + 1e-6 < next_time:
                        continue
                    width, height = _scaled_size(frame.width, frame.height, max_side)
                    frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
                    times.append(t)
                    while next_time <= t + 1e-6:
                        next_time += step
            if audio_stream is not None:
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        except av.error.FFmpegError as exc:
            raise DataError(f"{path}: cannot be decoded ({exc}).") from None
        container_duration = float(container.duration) / av.time_base if container.duration else 0.0

    media = Media(path=path, duration=0.0, sample_rate=sample_rate)
    if audio:
        if audio_stream is None:
            media.audio_problem = "no audio track"
        elif not chunks or sum(len(c) for c in chunks) == 0:
            media.audio_problem = "audio track is empty"
        else:
            media.audio = np.concatenate(chunks).astype(np.float32, copy=False)
    if video:
        if video_stream is None:
            media.video_problem = "no video track"
        elif not frames:
            media.video_problem = "video track has no decodable frames"
        else:
            media.frames = np.stack(frames)
            media.frame_times = np.asarray(times, dtype=np.float64)
    # The container's duration covers every stream; a file without one (raw streams) falls back
    # to what was decoded.
    audio_seconds = len(media.audio) / sample_rate if media.audio is not None else 0.0
    video_seconds = float(times[-1]) + step if times else 0.0
    media.duration = container_duration or max(audio_seconds, video_seconds)
    return media
