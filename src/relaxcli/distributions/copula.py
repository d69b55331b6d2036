"""PLACEHOLDER: being written for issue #2 (replaced before landing)."""

from torch.distributions import Distribution


class CorrelatedRelaxedBernoulli(Distribution):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('CorrelatedRelaxedBernoulli is being written (issue #2)')

