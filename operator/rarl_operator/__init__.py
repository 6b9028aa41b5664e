"""The RARL operator: reconciles RARLJob resources into multi-node trainer Jobs.

Importing the package registers every kopf handler, so ``kopf run -m rarl_operator``
works as is; ``python -m rarl_operator`` adds settings from the environment.
"""

from rarl_operator import handlers

__all__ = ["handlers"]
