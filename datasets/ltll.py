"""LTLL (landmarks photographed today and in archives): Today <-> Archive, as FREEDOM's official code evaluates it (see
cirbench.datasets._domains for the files and the protocol).

Layout (under <data root>/ltll/): full_files.csv from the official repository's
data/ltll/, and the images at the paths they list (less their leading "ltll/").
"""

from __future__ import annotations

from cirbench.contracts.dataset import register_dataset

from ._domains import DomainConversion


@register_dataset("ltll")
class LTLL(DomainConversion):
    name = "ltll"
    description = "LTLL landmarks, today <-> archive (FREEDOM): the query in its own database (mAP, R@5/10, P@5/10)"
    DOMAINS = {"New": "Today", "Old": "Archive"}
    FILES = ("full_files.csv", "full_files.csv")
    AT = (5, 10)
