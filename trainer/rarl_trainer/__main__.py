"""``python -m rarl_trainer``: see ``rarl_trainer.cli``."""

from rarl_trainer.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
