"""NICOpp: NICO++ domain conversion, as FREEDOM's official code evaluates it (see
cirbench.datasets._domains for the files and the protocol).

Layout (under <data root>/nico/): query_files.csv and database_files.csv from the official repository's
data/nico/, and the images at the paths they list (less their leading "nico/").
"""

from __future__ import annotations

from cirbench.contracts.dataset import register_dataset

from ._domains import DomainConversion


@register_dataset("nico")
class NICOpp(DomainConversion):
    name = "nico"
    description = ("NICO++ domain conversion (FREEDOM): every ordered pair of its six contexts (mAP, R@50/100, "
                   "P@50/100)")
    DOMAINS = {"autumn": "autumn", "dim": "dimlight", "grass": "grass", "outdoor": "outdoor", "rock": "rock",
               "water": "water"}
    AT = (50, 100)
