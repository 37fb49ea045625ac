"""Discovery: find the clip-worthy pairs in a photo archive as people keep it (issue #18, DESIGN.md §8)."""
from .bursts import Burst, group_bursts
from .config import DiscoverConfig
from .photos import Photo
from .manifest import contact_sheet, write_manifest
from .run import DiscoverResult, discover
from .state import DiscoverState, load_state, save_state

__all__ = ["Burst", "DiscoverConfig", "DiscoverResult", "DiscoverState", "Photo", "discover", "group_bursts",
           "load_state", "save_state", "write_manifest", "contact_sheet"]
