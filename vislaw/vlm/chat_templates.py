"""Conversation templates: how a LLaVA sample becomes token ids and training labels.

A template turns a conversation into text *segments*, each marked as a training target or not
(``plain``: the caption after the image; ``vicuna_v1``: each assistant answer with its closing
``</s>``). :func:`tokenize_conversation` then tokenizes the joined text once per
``<image>``-separated chunk and labels every token whose character span overlaps a target
segment. Masking by character spans works for any fast tokenizer (SentencePiece, byte-level BPE,
word level) without LLaVA's per-tokenizer off-by-one corrections, and the prompt is tokenized
as one string, exactly as at inference.

``<image>`` never enters the vocabulary: it becomes ``IMAGE_TOKEN_INDEX`` (-200) in ``input_ids``
and the model splices the projected image tokens there (vislaw.vlm.model).

Adding a template (e.g. another chat format) is one subclass and one :func:`register_template`
call; ``qwen2`` (ChatML) is registered here as the example beside LLaVA's two.

``auto`` (:class:`ChatTemplate`) needs no subclass: the conversation is rendered by the
tokenizer's own chat template (``apply_chat_template``) and each assistant answer plus the
model's own end-of-turn token becomes a target segment, so any chat LLM (Llama 3, Qwen2.5/3)
trains and is prompted in its own format through the same tokenization path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from vislaw.config import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
IMAGE_TOKEN_INDEX = -200
IMAGE_PLACEHOLDER = "<image>"
HUMAN, GPT = "human", "gpt"


@dataclass(frozen=True)
class Turn:
    """One message of a LLaVA conversation: ``role`` is "human" or "gpt"."""

    role: str
    text: str


@dataclass(frozen=True)
class Segment:
    text: str
    target: bool


def normalise_image_placeholder(turns: Sequence[Turn], has_image: bool) -> list[Turn]:
    """LLaVA's convention: with an image, exactly one ``<image>`` opens the first human turn
    (followed by a newline); without one, no placeholder remains anywhere."""
    cleaned = [Turn(t.role, t.text.replace(IMAGE_PLACEHOLDER, "").strip()) for t in turns]
    if has_image and cleaned:
        first = cleaned[0]
        cleaned[0] = Turn(first.role, f"{IMAGE_PLACEHOLDER}\n{first.text}")
    return cleaned


def _chat_turns(turns: Sequence[Turn], has_image: bool) -> list[Turn]:
    """Alternating human/gpt turns with the placeholder normalised; a leading gpt turn is dropped
    as LLaVA does (a few LLaVA-665K samples open with one)."""
    turns = list(turns)
    if turns and turns[0].role != HUMAN:
        turns = turns[1:]
    turns = normalise_image_placeholder(turns, has_image)
    for i, turn in enumerate(turns):
        expected = HUMAN if i % 2 == 0 else GPT
        if turn.role != expected:
            raise ValueError(f"turn {i} is from {turn.role!r}, expected {expected!r}")
    if not turns or len(turns) % 2:
        raise ValueError(f"a conversation needs human/gpt pairs, got {len(turns)} turns")
    return turns


class Template:
    """Base class: subclasses define the segments of a conversation and of a prompt."""

    name: ClassVar[str]
    add_bos: ClassVar[bool] = True
    stop: str = "</s>"
    # The text closing every assistant turn, trained as a target so that the model learns to
    # stop there: it must be the LLM's own end token (check_turn_markers). None: no turn marker
    # (plain: a stage-1 caption ends with a newline, as LLaVA's plain does).
    turn_end: str | None = None

    def segments(self, turns: Sequence[Turn], has_image: bool) -> list[Segment]:
        """The whole conversation as text segments; answers are targets."""
        raise NotImplementedError

    def prompt(self, question: str, has_image: bool) -> str:
        """Text the model continues to answer ``question`` (single turn, for evaluation)."""
        raise NotImplementedError


class PlainTemplate(Template):
    """Stage-1 captioning (LLaVA's ``plain``): ``<image>`` + caption + newline; the human turn's
    text is dropped, the caption and newline are the target."""

    name = "plain"
    stop = "\n"

    def segments(self, turns: Sequence[Turn], has_image: bool) -> list[Segment]:
        if len(turns) != 2 or turns[1].role != GPT:
            raise ValueError(f"the plain template wants one human and one gpt turn, got {turns}")
        prefix = IMAGE_PLACEHOLDER if has_image else ""
        caption = turns[1].text.replace(IMAGE_PLACEHOLDER, "").strip()
        return [Segment(prefix, False), Segment(caption + "\n", True)]

    def prompt(self, question: str, has_image: bool) -> str:
        return IMAGE_PLACEHOLDER if has_image else ""


@dataclass(frozen=True)
class _Roles:
    user: str
    assistant: str


class VicunaV1Template(Template):
    """LLaVA's ``vicuna_v1`` (SeparatorStyle.TWO): ``SYSTEM USER: q ASSISTANT: a</s>USER: ...``;
    every answer plus its ``</s>`` is a target, everything else is masked."""

    name = "vicuna_v1"
    system = (
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    )
    roles = _Roles("USER", "ASSISTANT")
    sep, sep2 = " ", "</s>"
    turn_end = sep2

    def segments(self, turns: Sequence[Turn], has_image: bool) -> list[Segment]:
        turns = _chat_turns(turns, has_image)
        out = [Segment(self.system + self.sep, False)]
        for question, answer in zip(turns[0::2], turns[1::2], strict=True):
            prefix = f"{self.roles.user}: {question.text}{self.sep}{self.roles.assistant}: "
            out += [Segment(prefix, False), Segment(answer.text + self.sep2, True)]
        return out

    def prompt(self, question: str, has_image: bool) -> str:
        turns = normalise_image_placeholder([Turn(HUMAN, question)], has_image)
        text = turns[0].text
        return f"{self.system}{self.sep}{self.roles.user}: {text}{self.sep}{self.roles.assistant}:"


class Qwen2Template(Template):
    """ChatML as Qwen2/2.5-Instruct format it; answers plus ``<|im_end|>`` are targets."""

    name = "qwen2"
    add_bos = False
    stop = turn_end = "<|im_end|>"
    system = "You are a helpful assistant."

    def _head(self) -> str:
        return f"<|im_start|>system\n{self.system}<|im_end|>\n"

    def segments(self, turns: Sequence[Turn], has_image: bool) -> list[Segment]:
        turns = _chat_turns(turns, has_image)
        out = [Segment(self._head(), False)]
        for question, answer in zip(turns[0::2], turns[1::2], strict=True):
            prefix = f"<|im_start|>user\n{question.text}<|im_end|>\n<|im_start|>assistant\n"
            out += [Segment(prefix, False), Segment(answer.text + "<|im_end|>", True)]
            out.append(Segment("\n", False))
        return out

    def prompt(self, question: str, has_image: bool) -> str:
        text = normalise_image_placeholder([Turn(HUMAN, question)], has_image)[0].text
        return f"{self._head()}<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


TEMPLATES: dict[str, Callable[[], Template]] = {}


def register_template(cls: type[Template]) -> type[Template]:
    TEMPLATES[cls.name] = cls
    return cls


for _cls in (PlainTemplate, VicunaV1Template, Qwen2Template):
    register_template(_cls)


AUTO = "auto"


def template_names() -> list[str]:
    """Every accepted ``template`` value: the registered templates and ``auto``."""
    return sorted([*TEMPLATES, AUTO])


def get_template(name: str, tokenizer: PreTrainedTokenizerBase | None = None) -> Template:
    """The template ``name``; ``auto`` renders with ``tokenizer``'s own chat template."""
    if name == AUTO:
        if tokenizer is None:
            raise ValueError("template 'auto' needs the LLM's tokenizer")
        return ChatTemplate(tokenizer)
    try:
        return TEMPLATES[name]()
    except KeyError:
        raise KeyError(
            f"unknown conversation template {name!r}; known: {template_names()}"
        ) from None


def resolve_template(
    name: str, tokenizer: PreTrainedTokenizerBase, source: str, key: str
) -> Template:
    """The checked template of a training stage: ``auto`` on a tokenizer without a usable chat
    template, and a named template whose turn end is not the LLM's own, are ConfigErrors on
    ``key``."""
    if name == AUTO:
        try:
            return ChatTemplate(tokenizer)
        except ValueError as err:
            raise ConfigError(
                key, f"template 'auto' with the tokenizer of {source}: {err}"
            ) from err
    template = get_template(name)
    check_turn_markers(template, tokenizer, source, key)
    return template


# A one-round chat rendered with a tokenizer's own chat template finds its end-of-turn token.
_PROBE_ANSWER = "vislaw probe answer"
_PROBE = [{"role": "user", "content": "q"}, {"role": "assistant", "content": _PROBE_ANSWER}]


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids of the tokenizer's special tokens (named ones and added special ones)."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return set(tokenizer.all_special_ids) | {i for i, t in added.items() if t.special}


def chat_turn_end(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The first special token the tokenizer's own chat template writes after an assistant
    message (Llama 3: ``<|eot_id|>``, ChatML: ``<|im_end|>``); None without a usable template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        text = tokenizer.apply_chat_template(_PROBE, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that refuses the probe: only EOS is known
        return None
    if not isinstance(text, str) or _PROBE_ANSWER not in text:
        return None
    after = text[text.rindex(_PROBE_ANSWER) + len(_PROBE_ANSWER) :]
    specials = _special_ids(tokenizer)
    for token in tokenizer(after, add_special_tokens=False)["input_ids"]:
        if token in specials:
            return str(tokenizer.convert_ids_to_tokens(token))
    return None


def model_end_tokens(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """The LLM's own end tokens by role: ``end of turn`` (from its chat template) and ``EOS``."""
    ends = {}
    turn_end = chat_turn_end(tokenizer)
    if turn_end is not None:
        ends["end of turn"] = turn_end
    if tokenizer.eos_token is not None:
        ends["EOS"] = str(tokenizer.eos_token)
    return ends


def check_turn_markers(
    template: Template, tokenizer: PreTrainedTokenizerBase, source: str, key: str
) -> None:
    """Refuse (ConfigError on ``key``) a template whose turn marker is not one token that is
    the LLM's own end of turn or EOS.

    Why: the marker is the last target of every answer. Written as text the tokenizer does not
    know (Llama 3 reading vicuna_v1's ``</s>``: four literal tokens), training teaches the model
    to spell it out and never to emit its real end token, so generation does not stop; no loss
    curve shows it."""
    ends = model_end_tokens(tokenizer)
    if template.turn_end is None or not ends:
        return
    ids = tokenizer(template.turn_end, add_special_tokens=False)["input_ids"]
    own = {tokenizer.convert_tokens_to_ids(token) for token in ends.values()}
    if len(ids) == 1 and ids[0] in own:
        return
    pieces = tokenizer.convert_ids_to_tokens(ids)
    encoded = (
        f"as {len(ids)} tokens {pieces}" if len(ids) != 1 else f"as {pieces[0]!r}, not an end token"
    )
    named = ", ".join(f"{role} {token!r}" for role, token in ends.items())
    fits = sorted(
        name
        for name, factory in TEMPLATES.items()
        if factory().turn_end is not None and factory().turn_end in ends.values()
    )
    if fits:
        hint = f"use template: {fits[0]}"
    elif getattr(tokenizer, "chat_template", None):
        hint = "use template: auto, its own chat template"
    else:
        hint = "no registered template ends turns with it: register one (register_template)"
    raise ConfigError(
        key,
        f"template '{template.name}' ends each assistant turn with {template.turn_end!r}, which "
        f"the tokenizer of {source} encodes {encoded}; the model's own: {named} ({hint})",
    )


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], **kw: Any) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, **kw)
    if not isinstance(text, str):
        raise ValueError(f"apply_chat_template returned {type(text).__name__}, not text")
    return text


def _find(text: str, piece: str, start: int, what: str) -> int:
    """Position of ``piece`` in ``text`` from ``start``; a template that rewrites a message's
    text (so it cannot be located) is an error rather than a silently wrong mask."""
    pos = text.find(piece, start)
    if pos < 0:
        raise ValueError(f"the chat template does not render the {what} text {piece[:40]!r} as is")
    return pos


class ChatTemplate(Template):
    """``auto``: the tokenizer's own chat template. Targets are exactly the assistant answers,
    each up to and including the model's own end-of-turn token (``chat_turn_end``, else EOS).

    Why the trained text is one full render, with renders of the chat up to each message used
    only to locate it: some templates render a turn differently once later turns follow (Qwen3
    drops the empty think block of earlier answers), so concatenated prefixes would not be the
    text the model sees.
    The template's own BOS text is kept (``add_bos`` False), as ``apply_chat_template`` does."""

    name = AUTO
    add_bos = False

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template (use a named template)")
        end = chat_turn_end(tokenizer) or tokenizer.eos_token
        if end is None:
            raise ValueError("its chat template ends assistant turns with no special token")
        self.tokenizer = tokenizer
        self.stop = self.turn_end = str(end)

    def segments(self, turns: Sequence[Turn], has_image: bool) -> list[Segment]:
        turns = _chat_turns(turns, has_image)
        roles = {HUMAN: "user", GPT: "assistant"}
        messages = [{"role": roles[t.role], "content": t.text} for t in turns]
        text = _render(self.tokenizer, messages, enable_thinking=False)
        out, pos, cursor = [], 0, 0  # pos: end of the emitted text; cursor: of the search
        for i, turn in enumerate(turns):
            start = self._locate(text, messages[: i + 1], cursor)
            cursor = start + len(turn.text)
            if turn.role == HUMAN:
                continue
            end = _find(text, self.turn_end, cursor, "end-of-turn")
            if text[cursor:end].strip():  # the answer must be closed by the end token itself
                raise ValueError(
                    f"the chat template writes {text[cursor:end][:40]!r} between an answer "
                    f"and {self.turn_end!r}"
                )
            end += len(self.turn_end)
            out += [Segment(text[pos:start], False), Segment(text[start:end], True)]
            pos = cursor = end
        return [*out, Segment(text[pos:], False)]

    def _locate(self, text: str, messages: list[dict[str, str]], cursor: int) -> int:
        """Where the last of ``messages`` starts in the full render ``text``: its last
        occurrence in the render of the chat up to it, when that render is a prefix of
        ``text``, so an answer that repeats the system prompt or a question is not found
        there; else (Qwen3 renders a final answer differently) its first occurrence after
        ``cursor``, the end of the previous message."""
        piece = messages[-1]["content"]
        own = _render(self.tokenizer, messages, enable_thinking=False)
        if text.startswith(own) and own.rfind(piece) >= cursor:
            return own.rfind(piece)
        return _find(text, piece, cursor, f"{messages[-1]['role']} message")

    def prompt(self, question: str, has_image: bool) -> str:
        text = normalise_image_placeholder([Turn(HUMAN, question)], has_image)[0].text
        messages = [{"role": "user", "content": text}]
        return _render(self.tokenizer, messages, add_generation_prompt=True, enable_thinking=False)


def stop_token_ids(template: Template, tokenizer: PreTrainedTokenizerBase) -> int | list[int]:
    """Token ids that end generation: EOS plus the template's turn end when that is another
    single token. Why: a base Llama 3 with its chat template has EOS ``<|end_of_text|>`` but
    closes answers with ``<|eot_id|>``; stopping only at EOS would generate past the answer."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if template.turn_end is not None:
        end = tokenizer(template.turn_end, add_special_tokens=False)["input_ids"]
        if len(end) == 1 and end[0] not in ids:
            ids.append(end[0])
    return ids[0] if len(ids) == 1 else ids


def _tokenize_text(
    text: str, spans: Sequence[tuple[int, int]], tokenizer: PreTrainedTokenizerBase
) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` (split at ``<image>``) and labels from character ``spans``."""
    ids: list[int] = []
    labels: list[int] = []
    start = 0
    chunks = text.split(IMAGE_PLACEHOLDER)
    for i, chunk in enumerate(chunks):
        if i:
            ids.append(IMAGE_TOKEN_INDEX)
            labels.append(IGNORE_INDEX)
        if chunk:
            enc = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=True)
            for token, (lo, hi) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
                lo, hi = lo + start, hi + start
                is_target = any(lo < t_hi and hi > t_lo for t_lo, t_hi in spans)
                ids.append(token)
                labels.append(token if is_target else IGNORE_INDEX)
        start += len(chunk) + len(IMAGE_PLACEHOLDER)
    return ids, labels


def tokenize_segments(
    segments: Sequence[Segment], tokenizer: PreTrainedTokenizerBase, add_bos: bool
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of segments; labels are -100 outside target segments."""
    text, spans, pos = "", [], 0
    for seg in segments:
        if seg.target:
            spans.append((pos, pos + len(seg.text)))
        text += seg.text
        pos += len(seg.text)
    ids, labels = _tokenize_text(text, spans, tokenizer)
    if add_bos and tokenizer.bos_token_id is not None:
        ids.insert(0, tokenizer.bos_token_id)
        labels.insert(0, IGNORE_INDEX)
    return ids, labels


def tokenize_conversation(
    template: Template,
    turns: Sequence[Turn],
    tokenizer: PreTrainedTokenizerBase,
    has_image: bool,
) -> tuple[list[int], list[int]]:
    """Training ids and labels of one conversation under ``template``."""
    return tokenize_segments(template.segments(turns, has_image), tokenizer, template.add_bos)


def tokenize_prompt(
    template: Template, question: str, tokenizer: PreTrainedTokenizerBase, has_image: bool
) -> list[int]:
    """Prompt ids for generation (the same tokenization path as training)."""
    segments = [Segment(template.prompt(question, has_image), False)]
    return tokenize_segments(segments, tokenizer, template.add_bos)[0]
