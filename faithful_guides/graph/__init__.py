"""Backend-neutral graph layer: the traced model, its inversion, checks and masks."""

from faithful_guides.graph.inversion import barren_latents as barren_latents
from faithful_guides.graph.inversion import invert as invert
from faithful_guides.graph.model_graph import ModelGraph as ModelGraph
from faithful_guides.graph.model_graph import PlateInfo as PlateInfo
from faithful_guides.graph.model_graph import SiteInfo as SiteInfo
from faithful_guides.graph.verify import Verdict as Verdict
from faithful_guides.graph.verify import is_faithful as is_faithful
from faithful_guides.graph.verify import is_minimal as is_minimal
