"""A Llama-3-style word-level tokenizer (its own turn markers, no ``</s>``): the template tests
and the training test that refuses vicuna_v1 on such an LLM build it."""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from vislaw.vlm.chat_templates import get_template

WORDS = r"\n|\w+|[^\w\s]"


LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
]


LLAMA3_CHAT = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
    "<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


TEXTS = [
    get_template("vicuna_v1").system,
    "USER: ASSISTANT: What colour? Red. Shape? A square. </s>",
]
"""Words both tokenizers of the template tests know (vicuna_v1's system prompt and turns)."""


def llama3_tokenizer(eos: str = "<|eot_id|>", chat: bool = False) -> PreTrainedTokenizerFast:
    """A Llama-3-style tokenizer: ``<|begin_of_text|>`` BOS, ``<|eot_id|>`` closing each turn
    (the instruct model's EOS; the base model's EOS is ``<|end_of_text|>``), no ``</s>``."""
    pre = pre_tokenizers.Split(Regex(WORDS), behavior="removed", invert=True)
    vocab = {tok: i for i, tok in enumerate(["<unk>", *LLAMA3_SPECIALS])}
    for text in TEXTS:
        for piece, _ in pre.pre_tokenize_str(text):
            vocab.setdefault(piece, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|begin_of_text|>", eos_token=eos, unk_token="<unk>"
    )
    tok.add_special_tokens({"additional_special_tokens": LLAMA3_SPECIALS})
    if chat:
        tok.chat_template = LLAMA3_CHAT
    return tok
