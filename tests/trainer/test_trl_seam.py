"""The TRL / transformers / PEFT members rarl_trainer overrides or reads, pinned: an upgrade fails here, loudly.

Beside ``rarl_trainer/trl_seam.py``, the one module that overrides TRL's and transformers' private
members (GRPOTrainer's generation/scoring/log-prob internals, the Trainer's checkpoint internals,
``GenerationMixin._get_logits_processor``) and reads their private state. rarl_trainer also subclasses
TRL's GRPOTrainer and SFTTrainer (``grpo.py``, ``sft.py``), the Trainer's public
``create_accelerator_and_postprocess`` (``sharding.FSDPOnCPUMixin``) and the Qwen VL processors
(``models.no_video_processor_class``). None of the private members is API: a release may rename a
parameter, reorder one, or stop reading an attribute, and the override would then be skipped or
called wrongly without any error. So:

* every method our classes define that a library base class also defines (found by walking the
  classes, so a new override is caught too) must have its library signature pinned in
  ``LIBRARY_SIGNATURES``, the installed library must still have exactly that signature, and our
  override must accept every parameter the library's accepts;
* every private attribute our trainer reads (found in its source) must be pinned in
  ``PRIVATE_READS`` and exist on a trainer built as the loop builds it; so must the public trainer
  state we read or set;
* every library member the seam overrides or wraps is pinned (``SEAM_INTERNALS``), and no module but
  ``trl_seam`` defines, overrides or names one of those private members;
* the installed versions are those of constraints-trainer.txt (image, make setup and CI alike).

When a pinned library version is bumped and this fails: read the library's new code for that
member, adapt the override, then update the pin.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import inspect
import re
import textwrap

import pytest

from tests.trainer.conftest import REPO, first_stage_trainer, job_doc

# (library class, member) -> its parameters: "name", "name=default", "*args", "**kwargs" (no annotations:
# what an override has to match is names, order, kinds and defaults).
LIBRARY_SIGNATURES: dict[tuple[str, str], list[str]] = {
    # trl.GRPOTrainer (trl 1.16.0)
    ("trl.GRPOTrainer", "__init__"): [
        "self", "model", "reward_funcs=None", "args=None", "train_dataset=None", "eval_dataset=None",
        "processing_class=None", "reward_processing_classes=None", "callbacks=None", "optimizers=(None, None)",
        "quantization_config=None", "peft_config=None", "tools=None", "rollout_func=None",
        "environment_factory=None",
    ],
    ("trl.GRPOTrainer", "_generate_and_score_completions"): ["self", "inputs"],
    ("trl.GRPOTrainer", "_tokenize_prompts"): ["self", "prompts"],
    ("trl.GRPOTrainer", "_generate_single_turn"): [
        "self", "prompt_ids", "images", "multimodal_fields", "num_generations", "has_tool_images=False",
    ],
    ("trl.GRPOTrainer", "_get_per_token_logps_and_entropies"): [
        "self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size=None", "compute_entropy=False",
        "compute_aux_loss=False", "pixel_values=None", "image_grid_thw=None", "num_images=None",
        "pixel_attention_mask=None", "spatial_shapes=None", "num_tiles=None", "image_sizes=None",
        "token_type_ids=None", "mm_token_type_ids=None", "image_position_ids=None",
    ],
    ("trl.GRPOTrainer", "compute_loss"): ["self", "model", "inputs", "return_outputs=False", "num_items_in_batch=None"],
    # transformers.Trainer (transformers 5.24.0), overridden by trl_seam.TrainerCheckpointSeam
    ("transformers.Trainer", "_save"): ["self", "output_dir=None", "state_dict=None"],
    ("transformers.Trainer", "_load_from_checkpoint"): ["self", "resume_from_checkpoint", "model=None"],
    ("transformers.Trainer", "_load_rng_state"): ["self", "checkpoint"],
    ("transformers.Trainer", "_save_optimizer_and_scheduler"): ["self", "output_dir"],
    # transformers.Trainer, overridden by sharding.FSDPOnCPUMixin
    ("transformers.Trainer", "create_accelerator_and_postprocess"): ["self"],
    # transformers processors, overridden by models.no_video_processor_class
    ("transformers.Qwen2VLProcessor", "__init__"): [
        "self", "image_processor=None", "tokenizer=None", "video_processor=None", "chat_template=None", "**kwargs",
    ],
    ("transformers.Qwen2_5_VLProcessor", "__init__"): [
        "self", "image_processor=None", "tokenizer=None", "video_processor=None", "chat_template=None", "**kwargs",
    ],
    ("transformers.ProcessorMixin", "get_attributes"): [],  # a classmethod: () once bound
    ("transformers.ProcessorMixin", "check_argument_for_proper_class"): ["self", "argument_name", "argument"],
    ("transformers.ProcessorMixin", "save_pretrained"): ["self", "save_directory", "push_to_hub=False", "**kwargs"],
    # transformers.GenerationMixin (transformers 5.24.0), wrapped per model object by trl_seam.appending_logits_processor
    ("transformers.GenerationMixin", "_get_logits_processor"): [
        "self", "generation_config", "input_ids_seq_length=None", "encoder_input_ids=None",
        "prefix_allowed_tokens_fn=None", "logits_processor=None", "device=None", "model_kwargs=None",
        "negative_prompt_ids=None", "negative_prompt_attention_mask=None",
    ],
}

# Every library internal trl_seam overrides, wraps or reads; each (private ones) is named by no other trainer module.
SEAM_INTERNALS: dict[str, list[tuple[str, str]]] = {
    "GRPOSeam": [("trl.GRPOTrainer", n) for n in (
        "_generate_and_score_completions", "_generate_single_turn", "_tokenize_prompts",
        "_get_per_token_logps_and_entropies", "compute_loss")],
    "TrainerCheckpointSeam": [("transformers.Trainer", n) for n in (
        "_save", "_save_optimizer_and_scheduler", "_load_from_checkpoint", "_load_rng_state")],
    "appending_logits_processor": [("transformers.GenerationMixin", "_get_logits_processor")],
}
SEAM_PRIVATE_NAMES = {name for pins in SEAM_INTERNALS.values() for _, name in pins if name.startswith("_")} | {
    "_metrics", "_tokenizer", "_is_fsdp_managed_module"}

# Private trainer attributes trl_seam.GRPOSeam reads (TRL's own state): each must exist on a built trainer.
PRIVATE_READS = {"_metrics", "_tokenizer"}

# Public trainer state read or set from outside the class (rollout.py around TRL's generation call,
# reporting.point_tensorboard, weights.ExactCheckpointMixin through self.args).
TRAINER_STATE = ["generation_config", "generation_kwargs", "pad_to_multiple_of", "callback_handler", "accelerator",
                 "eos_token_ids", "num_generations", "use_vllm", "is_deepspeed_enabled", "is_fsdp_enabled"]
ARGS_STATE = ["should_save", "output_dir", "process_index", "world_size", "fsdp_plugin_args"]

PINNED_VERSIONS = REPO / "constraints-trainer.txt"


def _resolve(dotted: str):
    import importlib

    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _params(fn) -> list[str]:
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            out.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            out.append(f"**{p.name}")
        elif p.default is not p.empty:
            out.append(f"{p.name}={p.default!r}")
        else:
            out.append(p.name)
    return out


def _our_classes():
    from rarl_trainer.grpo import RARLGRPOTrainer
    from rarl_trainer.models import no_video_processor_class
    from rarl_trainer.sft import RARLSFTTrainer
    from rarl_trainer.sharding import FSDPOnCPUMixin
    from rarl_trainer.trl_seam import GRPOSeam, TrainerCheckpointSeam
    from rarl_trainer.weights import ExactCheckpointMixin

    vlm = [no_video_processor_class("qwen2_vl"), no_video_processor_class("qwen2_5_vl")]
    return [(RARLGRPOTrainer, (RARLGRPOTrainer, GRPOSeam, ExactCheckpointMixin, TrainerCheckpointSeam, FSDPOnCPUMixin)),
            (RARLSFTTrainer, (RARLSFTTrainer, ExactCheckpointMixin, TrainerCheckpointSeam, FSDPOnCPUMixin)),
            *((c, (c,)) for c in vlm)]


def _overrides():
    """(our class, member, library class that defines it) for every member we override."""
    found = []
    for cls, ours in _our_classes():
        for own in ours:
            for name in own.__dict__:
                if name.startswith("__") and name != "__init__":
                    continue
                owner = next((k for k in cls.__mro__ if k not in ours and name in k.__dict__), None)
                if owner is not None and owner is not object:
                    found.append((own, name, owner))
    return found


def _pinned_key(owner, name):
    """The LIBRARY_SIGNATURES key naming ``owner.name`` (by the public name the library exports)."""
    return next((key for key in LIBRARY_SIGNATURES if key[1] == name and _resolve(key[0]) is owner), None)


def test_installed_versions_are_the_pinned_ones():
    wanted = {}
    for raw in PINNED_VERSIONS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups()
            wanted[name] = version
    assert {"torch", "transformers", "trl", "peft", "accelerate", "datasets"} <= set(wanted)
    have = {name: md.version(name).split("+", 1)[0] for name in wanted}  # 2.13.0+cpu is torch 2.13.0
    assert have == wanted, "installed versions differ from constraints-trainer.txt (make setup installs through it)"


def test_every_override_is_pinned():
    missing = [f"{own.__name__}.{name} overrides {owner.__module__}.{owner.__qualname__}.{name}"
               for own, name, owner in _overrides() if _pinned_key(owner, name) is None]
    assert not missing, "overrides without a pinned library signature (add them to LIBRARY_SIGNATURES): " + \
        "; ".join(missing)


@pytest.mark.parametrize("key", sorted(LIBRARY_SIGNATURES), ids=lambda k: f"{k[0]}.{k[1]}")
def test_library_signature_unchanged(key):
    cls, name = key
    member = getattr(_resolve(cls), name, None)
    assert member is not None, f"{cls}.{name} no longer exists: rarl_trainer overrides it"
    assert _params(member) == LIBRARY_SIGNATURES[key], (
        f"{cls}.{name} changed its signature: read the new code, adapt our override, then update the pin")


def test_overrides_accept_what_the_library_passes():
    """Every parameter of the library's member binds in our override (by name and as keyword where it can)."""
    problems = []
    for own, name, owner in _overrides():
        if isinstance(inspect.getattr_static(owner, name), classmethod) != isinstance(own.__dict__[name], classmethod):
            problems.append(f"{own.__name__}.{name}: a classmethod in one of {owner.__qualname__} and ours only")
            continue
        lib = inspect.signature(getattr(owner, name))
        ours = inspect.signature(getattr(own, name))
        kinds = {p.kind for p in ours.parameters.values()}
        positional = [p.name for p in ours.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        for i, p in enumerate(lib.parameters.values()):
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            q = ours.parameters.get(p.name)
            if q is not None and q.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                if p.kind is p.POSITIONAL_OR_KEYWORD and (q.kind is not p.kind or positional.index(p.name) != i):
                    problems.append(f"{own.__name__}.{name}: {p.name} is not positional parameter {i} as in the library")
                if p.default is not p.empty and q.default != p.default:
                    problems.append(f"{own.__name__}.{name}: default of {p.name} is {q.default!r}, "
                                    f"the library's {p.default!r}")
                continue
            # not named by us: *args takes it positionally, **kwargs by keyword; callers may use either
            needs = {inspect.Parameter.VAR_KEYWORD} | (
                {inspect.Parameter.VAR_POSITIONAL} if p.kind is p.POSITIONAL_OR_KEYWORD else set())
            if not needs <= kinds:
                problems.append(f"{own.__name__}.{name} does not accept the library's parameter {p.name}")
    assert not problems, "; ".join(sorted(set(problems)))


def _self_reads(cls) -> set[str]:
    """Attribute names read as ``self.<name>`` in a class's source (not the ones it assigns or defines)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    reads, assigned = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            (assigned if isinstance(node.ctx, ast.Store) else reads).add(node.attr)
    defined = {name for k in cls.__mro__ if k.__module__.startswith("rarl_trainer") for name in k.__dict__}
    return reads - assigned - defined


@pytest.fixture(scope="module")
def built_trainer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pinned")
    stages = [{"name": "s1", "steps": 1, "listSizes": [1]}]
    return first_stage_trainer(tmp, job_doc(tmp, stages=stages))[1]


def test_private_reads_are_pinned_and_exist(built_trainer):
    from rarl_trainer.grpo import RARLGRPOTrainer
    from rarl_trainer.trl_seam import GRPOSeam, TrainerCheckpointSeam
    from rarl_trainer.weights import ExactCheckpointMixin

    def private(names):
        return {r for r in names if r.startswith("_") and not r.startswith("_rarl")}

    outside = _self_reads(RARLGRPOTrainer) | _self_reads(ExactCheckpointMixin)
    assert not private(outside), f"private library state read outside trl_seam: {sorted(private(outside))}"
    reads = outside | _self_reads(GRPOSeam) | _self_reads(TrainerCheckpointSeam)
    assert private(reads) <= PRIVATE_READS, \
        f"new private reads, pin them in PRIVATE_READS: {sorted(private(reads) - PRIVATE_READS)}"
    absent = sorted(r for r in reads | PRIVATE_READS | set(TRAINER_STATE) if not hasattr(built_trainer, r))
    assert not absent, f"the trainer no longer has: {absent}"
    assert all(hasattr(built_trainer.args, a) for a in ARGS_STATE)
    assert isinstance(built_trainer._metrics["train"], dict)
    assert built_trainer._tokenizer is built_trainer.processing_class  # a text model: the tokenizer itself


def test_every_seam_internal_is_pinned_and_overridden_there():
    import rarl_trainer.trl_seam as seam

    for where, pins in SEAM_INTERNALS.items():
        for key in pins:
            assert key in LIBRARY_SIGNATURES, f"trl_seam.{where} uses {key[0]}.{key[1]}: pin its signature"
            owner = getattr(seam, where)
            if isinstance(owner, type):
                assert key[1] in owner.__dict__, f"trl_seam.{where} no longer overrides {key[1]}: update SEAM_INTERNALS"
            else:
                assert key[1] in inspect.getsource(owner), f"trl_seam.{where} no longer wraps {key[1]}"
        if isinstance(getattr(seam, where), type):  # and nothing private it overrides is missing from the list
            private = {n for n in vars(getattr(seam, where)) if n.startswith("_") and not n.startswith("__")}
            assert private <= {name for _, name in pins}, f"trl_seam.{where}: {sorted(private)} not all pinned"


def test_private_library_members_are_overridden_in_the_seam_only():
    """No class of the trainer but trl_seam's overrides a private (underscore) TRL / transformers member."""
    wrong = [f"{own.__module__}.{own.__qualname__}.{name} overrides {owner.__module__}.{owner.__qualname__}.{name}"
             for own, name, owner in _overrides()
             if name.startswith("_") and not name.startswith("__") and own.__module__ != "rarl_trainer.trl_seam"]
    assert not wrong, "move these overrides into rarl_trainer/trl_seam.py: " + "; ".join(wrong)


def test_no_module_but_the_seam_names_the_internals():
    """The trainer's code (strings and comments aside) names the seam's private library members only in trl_seam."""
    found = []
    for path in sorted((REPO / "trainer" / "rarl_trainer").rglob("*.py")):
        if path.name == "trl_seam.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = (node.attr if isinstance(node, ast.Attribute) else
                    node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None)
            if name in SEAM_PRIVATE_NAMES:
                found.append(f"{path.name}:{node.lineno} {name}")
    assert not found, "TRL/transformers internals used outside trl_seam: " + ", ".join(found)


def test_trl_generation_reads_the_state_the_rollout_engine_sets():
    """rollout.RolloutEngine swaps trainer.generation_config / generation_kwargs around TRL's call: TRL must read them there."""
    from trl import GRPOTrainer

    src = inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "generation_config=self.generation_config" in src
    assert "generation_kwargs=self.generation_kwargs" in src
    # TRL's own calls of the overrides (whitespace aside)
    calls = "".join(inspect.getsource(GRPOTrainer._generate).split())
    assert "self._tokenize_prompts(prompts)" in calls
    assert "self._generate_single_turn(prompt_ids,images,multimodal_fields,num_generations)" in calls


def test_tokenize_prompts_contract(built_trainer):
    """What trl_seam.GRPOSeam._tokenize_prompts unpacks: (prompt_ids lists, images, multimodal fields)."""
    from trl import GRPOTrainer

    prompts = [[{"role": "user", "content": "estimate 3"}], [{"role": "user", "content": "estimate 10"}]]
    ids, images, fields = GRPOTrainer._tokenize_prompts(built_trainer, prompts)
    assert [type(x) for x in ids] == [list, list] and all(isinstance(t, int) for t in ids[0])
    assert images is None and fields == {}


def test_other_library_members_we_use(built_trainer):
    from accelerate.utils import gather_object  # noqa: F401  (grpo._gather)
    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers.integrations import TensorBoardCallback
    from transformers.trainer import TRAINING_ARGS_NAME

    assert TRAINING_ARGS_NAME == "training_args.bin"  # weights.ExactCheckpointMixin.rarl_save_checkpoint writes it
    for name in ("merge_adapter", "unmerge_adapter", "merge_and_unload", "delete_adapter", "set_adapter"):
        assert callable(getattr(built_trainer.model, name, None)), name  # rollout.py, export.py, stages.py (LoRA)
    for name in ("get_base_layer", "merged"):
        assert hasattr(BaseTunerLayer, name), name  # rollout.tuner_layers / any_merged / _take_snapshot
    # reporting.point_tensorboard sets cb.logging_dir before the writer is made: transformers must use it
    assert "log_dir=self.logging_dir" in inspect.getsource(TensorBoardCallback)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil  # noqa: F401
