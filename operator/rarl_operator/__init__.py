"""The RARL operator: reconciles RARLJob resources into multi-node trainer Jobs.

Importing the package runs nothing: ``rarl_operator.handlers`` registers the kopf handlers
(``kopf run -m rarl_operator.handlers``); ``python -m rarl_operator`` imports it and adds
settings from the environment.
"""
