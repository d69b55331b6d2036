"""PLACEHOLDER: being written for issue #2 (replaced before landing)."""

from torch.distributions import Distribution


class GaussianRelaxedBernoulli(Distribution):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('GaussianRelaxedBernoulli is being written (issue #2)')


class HardConcrete(Distribution):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('HardConcrete is being written (issue #2)')


class RelaxedBernoulli(Distribution):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('RelaxedBernoulli is being written (issue #2)')


class StochasticTimesSmooth(Distribution):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('StochasticTimesSmooth is being written (issue #2)')


class StraightThroughBernoulli(Distribution):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('StraightThroughBernoulli is being written (issue #2)')

