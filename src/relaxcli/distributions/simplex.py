"""PLACEHOLDER: being written for issue #2 (replaced before landing)."""

from torch.distributions import Distribution


class InvertibleGaussian(Distribution):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('InvertibleGaussian is being written (issue #2)')


class LogisticNormalSoftmax(Distribution):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('LogisticNormalSoftmax is being written (issue #2)')

