"""WeiCom (Psomas et al., "Composed Image Retrieval for Remote Sensing", billpsomas/rscir): fuse the
image and text similarities to every gallery item instead of fusing the features.

For a query with normalised image feature v and text feature w and the normalised gallery X, as the
official evaluate.py (calculate_rankings): s_I = v . X and s_T = w . X; the score is
(1 - lam) s_I + lam s_T with the code's default lam = 0.5 (``--lambdas`` default '0.5').

The official method names say whether the similarities are normalised: only a name containing "norm"
("Weighted Similarities Norm", the code's default method) standardises each similarity over the
gallery with torch.std and maps it through the Gaussian CDF (utils.norm_cdf). So by default
``fusion=weighted`` normalises and the other fusions of the same file -- ``average`` ((s_I + s_T)/2),
``add``, ``multiply``, ``minimum`` -- do not; ``--option weicom.normalize=true|false`` overrides it.
The official "Minimum Similarity" ranks by the *maximum* of the two similarities in ascending order;
that habit is reproduced by ``fusion=minimum`` and the clean variant (rank by the minimum, descending)
is ``fusion=minimum-clean``.

On a split whose queries rank only their own gallery (GeneCIS), the standardisation runs over each
query's own candidates, the database the official code standardises over.
"""

from __future__ import annotations

from cirbench.errors import RunError
from cirbench.contracts.method import Method, Option, register_method
from cirbench.protocol.scoring import normalize

from ._shared import caption_prompts, caption_template

FUSIONS = ("weighted", "average", "add", "multiply", "minimum", "minimum-clean")


def norm_cdf(s, mask=None):
    """Standardise each row over the gallery (or over ``mask``'s columns) and apply the Gaussian CDF."""
    import torch

    if mask is None:
        if s.shape[1] < 2:
            raise RunError("WeiCom standardises each similarity over the gallery, and a gallery of one image "
                           "has no spread (--option weicom.normalize=false scores it without)")
        mean, std = s.mean(dim=1, keepdim=True), s.std(dim=1, keepdim=True)
    else:
        m = mask.float()
        n = m.sum(dim=1, keepdim=True)
        if bool((n < 2).any()):
            raise RunError("WeiCom standardises each similarity over a query's candidates, and a query has "
                           "fewer than two (--option weicom.normalize=false scores it without)")
        mean = (s * m).sum(dim=1, keepdim=True) / n
        std = (((s - mean) ** 2 * m).sum(dim=1, keepdim=True) / (n - 1).clamp(min=1)).sqrt()
    return 0.5 * (1 + torch.erf((s - mean) / (std * torch.sqrt(torch.tensor(2.0)))))


def fuse(s_img, s_txt, fusion: str, lam: float):
    import torch

    if fusion == "weighted":
        return (1 - lam) * s_img + lam * s_txt
    if fusion == "average":
        return (s_img + s_txt) / 2
    if fusion == "add":
        return s_img + s_txt
    if fusion == "multiply":
        return s_img * s_txt
    if fusion == "minimum":  # the official code: ascending order of the maximum
        return -torch.maximum(s_img, s_txt)
    return torch.minimum(s_img, s_txt)


@register_method("weicom")
class WeiCom(Method):
    description = "weighted fusion of Gaussian-CDF-normalised image and text similarities (training-free)"
    display_order = 7
    scoring = "scores"
    options = {"lam": Option(float, 0.5, "weight of the text similarity (0: image only, 1: text only)",
                             bounds=(0, 1)),
               "fusion": Option(str, "weighted", "how the two similarities combine", FUSIONS),
               "normalize": Option(bool, None, "standardise each similarity over the gallery and apply the "
                                               "Gaussian CDF (default: as the official method names, only for "
                                               "fusion=weighted, 'Weighted Similarities Norm')")}

    @property
    def normalized(self) -> bool:
        given = self.option("normalize")
        return self.option("fusion") == "weighted" if given is None else bool(given)

    def score(self, batch, gallery):
        import torch

        device = batch.reference_features.device
        x = normalize(gallery.features.to(device))
        text = self.ctx.text_features(caption_prompts(batch)).to(device)
        s_img = normalize(batch.reference_features) @ x.T
        s_txt = normalize(text) @ x.T
        if self.normalized:
            mask = None
            if batch.split.scope == "subset" and batch.subsets is not None:
                mask = torch.zeros_like(s_img, dtype=torch.bool)
                for row, members in enumerate(batch.subsets):
                    mask[row, members] = True
            s_img, s_txt = norm_cdf(s_img, mask), norm_cdf(s_txt, mask)
        return fuse(s_img, s_txt, self.option("fusion"), self.option("lam"))

    def config(self):
        return {"lam": self.option("lam"), "fusion": self.option("fusion"), "normalize": self.normalized,
                "prompt": caption_template(self.split)}
