"""DreamMover: two photos with large motion -> a short, semantically consistent clip (Shen et al., ECCV 2024)."""
from .config import InterpolationConfig
from .models import DEFAULT_MODEL, ModelComponents, ModelLoadError, load_components
from .pipeline import DreamMover, InterpolationResult
from .state import PairState

__all__ = ["DEFAULT_MODEL", "DreamMover", "InterpolationConfig", "InterpolationResult", "ModelComponents",
           "ModelLoadError", "PairState", "load_components"]
__version__ = "0.1.0"
