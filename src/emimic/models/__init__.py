"""The EMI model and its pluggable parts (encoders, fusions, the VAD prior)."""

from emimic.models.emi import EMIModel, ModelOutput, ModelSpec, build_model, resolve_spec
from emimic.models.encoders import ENCODERS
from emimic.models.fusion import FUSIONS

__all__ = ["ENCODERS", "FUSIONS", "EMIModel", "ModelOutput", "ModelSpec", "build_model", "resolve_spec"]
