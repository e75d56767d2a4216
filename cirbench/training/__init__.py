"""Training: the pieces shared by training loops (loop: batches, schedules, losses, options) and the
training data of each kind with the orchestration's automatic training (sources).

May import: cirbench.errors, cirbench.util, cirbench.protocol, cirbench.contracts, cirbench.storage.
"""

from cirbench.training.loop import (batches, decay_groups, option, steps_per_epoch,
                                    symmetric_infonce, warmup_cosine)

__all__ = ["batches", "decay_groups", "option", "steps_per_epoch", "symmetric_infonce", "warmup_cosine"]
