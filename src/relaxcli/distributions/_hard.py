"""Straight-through (``hard=True``) variants as classes of their own.

torch and Pyro read ``support.is_discrete`` (and tests of distribution libraries read it on the
class). A support that depends on ``hard`` is a dependent property, and on the class it can only
say one thing. So ``Cls(..., hard=True)`` returns an instance of ``Cls.hard_class()``: a subclass
named ``Hard<Cls>`` whose only difference is a class-level ``support`` with ``is_discrete=True``.
``isinstance(d, Cls)`` still holds, ``expand`` keeps the class, and the subclass is registered in
``Cls``'s module under its name so that instances pickle.
"""

from __future__ import annotations

import sys

from torch.distributions import constraints

_HARD_CLASSES: dict[type, type] = {}


class HardSwitch:
    """Mixin for classes with a ``hard`` keyword whose hard support is discrete (see module doc)."""

    _is_hard_class = False

    def __new__(cls, *args, **kwargs):
        target = cls.hard_class() if kwargs.get("hard") and not cls._is_hard_class else cls
        return super().__new__(target)

    @classmethod
    def hard_class(cls) -> type:
        """The ``Hard<Cls>`` subclass (built once per class, Pyro-ready subclasses included)."""
        if cls._is_hard_class:
            return cls
        if cls not in _HARD_CLASSES:
            soft = cls.support  # the dependent property object itself, read on the class
            support = constraints.dependent_property(soft.fget, is_discrete=True, event_dim=soft.event_dim)
            name = f"Hard{cls.__name__}"
            hard = type(cls)(name, (cls,), {
                "support": support, "_is_hard_class": True, "__module__": cls.__module__,
                "__qualname__": name,
                "__doc__": f"{cls.__name__} with ``hard=True``: a discrete (straight-through) law; "
                           f"built by ``{cls.__name__}(..., hard=True)``.",
            })
            module = sys.modules.get(cls.__module__)
            if module is not None and not hasattr(module, name):
                setattr(module, name, hard)  # so that pickle finds it by name
            _HARD_CLASSES[cls] = hard
        return _HARD_CLASSES[cls]
