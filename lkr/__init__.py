"""lkr: a reproduction kit for LKRNet (Zhu et al., 2020), a dual-branch network based on
local key regions for facial expression recognition."""

__version__ = "0.2.0"
