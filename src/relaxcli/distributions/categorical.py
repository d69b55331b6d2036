"""PLACEHOLDER: being written for issue #2 (replaced before landing)."""

from torch.distributions import Distribution


class DecoupledStraightThroughGumbelSoftmax(Distribution):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('DecoupledStraightThroughGumbelSoftmax is being written (issue #2)')


class GeneralizedGumbelSoftmax(Distribution):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('GeneralizedGumbelSoftmax is being written (issue #2)')


class GumbelSoftmax(Distribution):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('GumbelSoftmax is being written (issue #2)')

