"""DreamMover evaluation as in the paper (Sec. 4.2, supp. C): metrics, baselines, ablations, the `bench` report."""
from .baselines import ABLATIONS, METHODS, ClassicFlow, Crossfade, make_method
from .metrics import WE_SCALE, high_frequency_ratio, score_clip, warping_error, we_mid

__all__ = ["ABLATIONS", "METHODS", "WE_SCALE", "ClassicFlow", "Crossfade", "high_frequency_ratio", "make_method",
           "score_clip", "warping_error", "we_mid"]
