"""relaxcli: relaxed distributions and gradient estimators for discrete random variables.

The math lives in :mod:`relaxcli.distributions` (one module per family) and
:mod:`relaxcli.estimators`; :mod:`relaxcli.methods` is the single registry that the ``relax``
command line, the experiments and the tests read.
"""

__version__ = "0.2.0"
