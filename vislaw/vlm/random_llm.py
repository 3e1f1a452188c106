"""The demo's LLM: a random-init small Llama with a byte-level BPE tokenizer trained locally.

Both are written with ``save_pretrained``, so every later stage loads them with
``AutoModelForCausalLM/AutoTokenizer.from_pretrained(path)`` -- the very call that loads
Vicuna. The tokenizer mirrors Llama's special tokens (``<unk>``, ``<s>`` prepended as BOS,
``</s>`` as EOS, no pad token: training sets pad = unk as LLaVA does for Vicuna), and ``<image>``
is not a vocabulary token (templates turn it into IMAGE_TOKEN_INDEX).

``llm.tiny: {architecture: llama3 | qwen2 | qwen3}`` builds a twin of a 2026 chat LLM instead:
that architecture's model class, its special tokens (Llama 3: ``<|begin_of_text|>``,
``<|eot_id|>``; Qwen: ChatML, no BOS) and its chat template, so ``template: auto`` is exercised
offline exactly as with the real checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vislaw.vlm.chat_templates import GPT, HUMAN, IMAGE_PLACEHOLDER, TEMPLATES, Turn

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TINY_LLAMA: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 4096,
}
DEFAULT_VOCAB = 1024
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")

# Meta-Llama-3-8B-Instruct's chat template, verbatim.
LLAMA3_CHAT = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
# Qwen2.5-Instruct's chat template without the tool-calling branches.
QWEN2_CHAT = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}{%- else %}"
    "{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\n' }}{%- endif %}{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}"
    "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}"
    "{%- endif %}"
)
# Qwen3's chat template without tools and reasoning content: the final answer carries an empty
# think block, earlier ones do not; enable_thinking=false closes the prompt's think block.
QWEN3_CHAT = (
    "{%- for message in messages %}{%- if message.role == 'assistant' and loop.last %}"
    "{{- '<|im_start|>assistant\n<think>\n\n</think>\n\n' + message.content + "
    "'<|im_end|>\n' }}{%- else %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}"
    "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\n\n</think>\n\n' }}{%- endif %}{%- endif %}"
)
CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")


@dataclass(frozen=True)
class TinyArch:
    """A tiny twin's model class (transformers ``<prefix>Config``/``<prefix>ForCausalLM``),
    special tokens (``bos``/``eos``/``pad``/``unk`` name some of ``specials``) and chat
    template (None: the paper's Vicuna-style tokenizer, without one)."""

    prefix: str
    specials: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str | None = None
    unk: str | None = None
    chat_template: str | None = None


TINY_ARCHS: dict[str, TinyArch] = {
    "llama": TinyArch("Llama", SPECIAL_TOKENS, "<s>", "</s>", unk="<unk>"),
    "llama3": TinyArch(
        "Llama",
        ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>")
        + ("<|eot_id|>",),
        "<|begin_of_text|>",
        "<|eot_id|>",
        pad="<|end_of_text|>",
        chat_template=LLAMA3_CHAT,
    ),
    "qwen2": TinyArch(
        "Qwen2", CHATML_SPECIALS, None, "<|im_end|>", "<|endoftext|>", chat_template=QWEN2_CHAT
    ),
    "qwen3": TinyArch(
        "Qwen3", CHATML_SPECIALS, None, "<|im_end|>", "<|endoftext|>", chat_template=QWEN3_CHAT
    ),
}


def tiny_arch(name: str) -> TinyArch:
    """The twin ``llm.tiny.architecture`` names; an unknown name is an error naming the key."""
    if name not in TINY_ARCHS:
        from vislaw.config import ConfigError

        raise ConfigError(
            "llm.tiny.architecture", f"unknown architecture {name!r}; known: {sorted(TINY_ARCHS)}"
        )
    return TINY_ARCHS[name]


def chat_texts(arch: TinyArch) -> list[str]:
    """The chat template's fixed text (roles, system prompt) so it becomes short tokens."""
    if arch.chat_template is None:
        return []
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    messages = [{"role": "user", "content": "question"}, {"role": "assistant", "content": "a"}]
    text = env.from_string(arch.chat_template).render(
        messages=messages, bos_token=arch.bos or "", add_generation_prompt=False
    )
    return [text]


def template_texts() -> list[str]:
    """Every registered template's fixed text, so system prompts and role names become short
    token sequences in the trained vocabulary."""
    turns = [Turn(HUMAN, "question"), Turn(GPT, "answer")]
    texts = []
    for factory in TEMPLATES.values():
        template = factory()
        text = "".join(s.text for s in template.segments(turns, has_image=True))
        texts.append(text.replace(IMAGE_PLACEHOLDER, ""))
    return texts


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB, arch: TinyArch = TINY_ARCHS["llama"]
) -> PreTrainedTokenizerBase:
    """Byte-level BPE (any text encodes) with ``arch``'s special tokens, BOS post-processing
    where the architecture prepends one (Llama 2/3, not Qwen) and its chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=arch.unk))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(arch.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([*template_texts(), *chat_texts(arch), *texts], trainer=trainer)
    if arch.bos is not None:
        bos = core.token_to_id(arch.bos)
        core.post_processor = processors.TemplateProcessing(
            single=f"{arch.bos} $A",
            pair=f"{arch.bos} $A {arch.bos} $B",
            special_tokens=[(arch.bos, bos)],
        )
    named = {
        "bos_token": arch.bos,
        "eos_token": arch.eos,
        "unk_token": arch.unk,
        "pad_token": arch.pad,
    }
    extra = [t for t in arch.specials if t not in named.values()]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        **{key: token for key, token in named.items() if token is not None},
        **({"additional_special_tokens": extra} if extra else {}),
    )
    tokenizer.chat_template = arch.chat_template
    return tokenizer


def build_tiny_llama(
    tokenizer: PreTrainedTokenizerBase,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    arch: TinyArch = TINY_ARCHS["llama"],
) -> PreTrainedModel:
    """A seeded random-init ``<arch>ForCausalLM`` sized by TINY_LLAMA plus ``overrides``."""
    import torch
    import transformers

    kwargs = {**TINY_LLAMA, **dict(overrides or {})}
    kwargs.pop("vocab_size", None)
    kwargs.pop("architecture", None)
    kwargs.setdefault("head_dim", kwargs["hidden_size"] // kwargs["num_attention_heads"])
    config_class = getattr(transformers, f"{arch.prefix}Config")
    model_class = getattr(transformers, f"{arch.prefix}ForCausalLM")
    config = config_class(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        **kwargs,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


def write_tiny_llm(
    texts: Iterable[str],
    out_dir: str | Path,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """Train the tokenizer on ``texts``, build the model, ``save_pretrained`` both (atomic)."""
    from vislaw.io.atomic import atomic_dir

    overrides = dict(overrides or {})
    arch = tiny_arch(str(overrides.get("architecture", "llama")))
    tokenizer = train_tokenizer(texts, int(overrides.get("vocab_size", DEFAULT_VOCAB)), arch)
    model = build_tiny_llama(tokenizer, overrides, seed, arch)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)
