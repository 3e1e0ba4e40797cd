"""Backend-neutral plans of the guide families; the hosts' modules build on them."""

from faithful_guides.autoguides.made_plan import MadePlan as MadePlan
from faithful_guides.autoguides.made_plan import build_made_plan as build_made_plan
