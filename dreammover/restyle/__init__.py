"""DreamMotion (Jeong et al., ECCV 2024): text-driven restyling of a clip that keeps its structure and motion."""
from .attention import KeyCaptureProcessor, capture_keys, key_layers
from .build import T2V_SPECS, build_t2v, ensure_t2v
from .config import RestyleConfig
from .edit import RestyleResult, restyle
from .errors import RestyleInputError, check_restyle_inputs
from .masks import latent_mask, mask_from_box, parse_box, read_mask
from .method import (decode_clip, encode_clip, forward_noise, guided_eps, masked_dds_gradient, self_similarity,
                     sgd_update, spatial_ssm_loss, ssm_gradient, temporal_similarity, temporal_ssm_loss)
from .model import BUILT_T2V, DEFAULT_T2V, T2VModel, load_t2v
from .preflight import RestylePlan, restyle_preflight
from .windows import fit_size, plan_windows
from ..models import ModelLoadError

__all__ = [
    "BUILT_T2V", "DEFAULT_T2V", "KeyCaptureProcessor", "ModelLoadError", "RestyleConfig", "RestyleInputError",
    "RestylePlan", "RestyleResult", "T2VModel", "T2V_SPECS", "build_t2v", "capture_keys", "check_restyle_inputs", "decode_clip",
    "encode_clip", "ensure_t2v", "fit_size", "forward_noise", "guided_eps", "key_layers", "latent_mask",
    "load_t2v", "mask_from_box", "masked_dds_gradient", "parse_box", "plan_windows", "read_mask", "restyle", "restyle_preflight",
    "self_similarity", "sgd_update", "spatial_ssm_loss", "ssm_gradient", "temporal_similarity",
    "temporal_ssm_loss",
]
