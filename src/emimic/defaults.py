"""Constants and names the command line needs before any heavy import (no numpy, pandas, pydantic).

``emimic --help`` builds every command's parser; what those parsers show (seed range, preset
names, store dtypes) lives here so that printing help costs no library import.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SEED_MAX = 2**32 - 1  # numpy's and Lightning's limit
# What `emimic train` uses without --config: the paper method sized for small corpora (docs/training.md).
DEFAULT_PRESET = "default"
# Frame storage types of a packed FeatureStore, and the variable naming its cache folder.
STORE_DTYPES: tuple[str, ...] = ("float32", "float16")
CACHE_ENV = "EMIMIC_CACHE"
# How long a command waits for another one writing what it needs: packing the same store (15k clips pack in a minute
# or two), extracting the same videos for the same run (`emimic infer`). Then it is refused, saying so.
LOCK_WAIT_SECONDS = 1800.0
# The epoch limit of every run of `emimic ablate`, from the command line and from Python alike: every cell x seed
# is a full training, compared with the others at this equal budget (docs/ablation.md, "Defaults and what they cost").
ABLATION_MAX_EPOCHS = 10
# The preset a grid's cells start from and the cell they are compared with, unless the grid says otherwise.
ABLATION_BASE = "paper"
# Where the jobs of `cv` and `ablate` run (emimic.training.jobs.Backend).
RUNNER_BACKENDS: tuple[str, ...] = ("local", "ray")
# Where and how `train` runs (Lightning's names): the choices of the config and of `emimic train`'s flags.
ACCELERATORS: tuple[str, ...] = ("cpu", "gpu", "auto")
PRECISIONS: tuple[str, ...] = ("32-true", "16-mixed", "bf16-mixed")
STRATEGIES: tuple[str, ...] = ("auto", "ddp")
# The modality whose 3 columns serve as the VAD prior's observed mean (model.vad.observed) unless a config says
# otherwise: `validate`, which knows no config, judges its feature names as `train` does under every preset but no_vad.
DEFAULT_OBSERVED_VAD = "vad"


def preset_dir() -> Path:
    """The folder of the packaged YAML presets."""
    return Path(str(resources.files("emimic") / "configs"))


def preset_names() -> list[str]:
    """Names of the packaged presets (file stems; nothing is parsed)."""
    return sorted(path.stem for path in preset_dir().glob("*.yaml"))


# The columns of a split CSV that group its clips (a speaker, a seed video), in order of precedence: the first present
# keeps each group whole in cross-validation folds and in the share of train --valid-fraction holds out.
GROUP_COLUMNS: tuple[str, ...] = ("group", "speaker", "seed_video")
