"""MiniDomainNet: MiniDomainNet domain conversion, as FREEDOM's official code evaluates it (see
cirbench.datasets._domains for the files and the protocol).

Layout (under <data root>/minidn/): query_files.csv and database_files.csv from the official repository's
data/minidn/, and the images at the paths they list (less their leading "minidn/").
"""

from __future__ import annotations

from cirbench.contracts.dataset import register_dataset

from ._domains import DomainConversion


@register_dataset("minidn")
class MiniDomainNet(DomainConversion):
    name = "minidn"
    description = ("MiniDomainNet domain conversion (FREEDOM): every ordered pair of clipart, painting, photo, "
                   "sketch (mAP, R@50/100, P@50/100)")
    DOMAINS = {"clipart": "clipart", "painting": "painting", "real": "photo", "sketch": "sketch"}
    AT = (50, 100)
