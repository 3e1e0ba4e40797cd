"""Neutral plans of the guide families: layout, structure, options, and each family's plan."""

from faithful_guides.autoguides.made_plan import MadePlan as MadePlan
from faithful_guides.autoguides.made_plan import build_made_plan as build_made_plan
from faithful_guides.autoguides.structure import GuideStructure as GuideStructure
from faithful_guides.autoguides.structure import build_structure as build_structure
