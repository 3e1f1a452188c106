"""Conversation templates: label masking pinned on hand-checked examples, placeholder handling,
and the train/inference prompt agreement, for a word-level and a byte-level BPE tokenizer."""

from __future__ import annotations

import pytest
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from helpers.word_tokenizers import TEXTS, WORDS, llama3_tokenizer
from vislaw.config import ConfigError
from vislaw.vlm.chat_templates import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    TEMPLATES,
    Turn,
    check_turn_markers,
    get_template,
    model_end_tokens,
    tokenize_conversation,
    tokenize_prompt,
)
from vislaw.vlm.random_llm import train_tokenizer

SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]


def word_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """One token per word, punctuation mark or newline, so expectations can be written by hand."""
    pre = pre_tokenizers.Split(Regex(WORDS), behavior="removed", invert=True)
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(text):
            vocab.setdefault(piece, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tok.add_special_tokens({"additional_special_tokens": SPECIALS[3:]})
    return tok


def tokens(tok: PreTrainedTokenizerFast, ids: list[int]) -> list[str]:
    return ["<IMG>" if i == IMAGE_TOKEN_INDEX else tok.convert_ids_to_tokens(i) for i in ids]


def targets(tok: PreTrainedTokenizerFast, ids: list[int], labels: list[int]) -> list[str]:
    assert len(ids) == len(labels)
    for i, label in zip(ids, labels, strict=True):
        assert label in (IGNORE_INDEX, i), "a label is either masked or the token itself"
    return [tok.convert_ids_to_tokens(i) for i, lab in zip(ids, labels, strict=True) if lab != -100]


VICUNA = get_template("vicuna_v1")
CONVERSATION = [
    Turn("human", "What colour?\n<image>"),
    Turn("gpt", "Red."),
    Turn("human", "Shape?"),
    Turn("gpt", "A square."),
]


@pytest.fixture(scope="module")
def word_tok() -> PreTrainedTokenizerFast:
    corpus = [
        VICUNA.system,
        "USER: ASSISTANT:",
        "What colour? Red. Shape? A square. Describe.",
        "a red circle\n",
        "system user assistant You are a helpful assistant.",
    ]
    return word_tokenizer(corpus)


def test_plain_masks_everything_but_the_caption(word_tok):
    turns = [Turn("human", "<image>\nDescribe."), Turn("gpt", "a red circle")]
    ids, labels = tokenize_conversation(get_template("plain"), turns, word_tok, has_image=True)
    # LLaVA's plain: BOS, the image, then caption + "\n"; the human text is dropped.
    assert tokens(word_tok, ids) == ["<s>", "<IMG>", "a", "red", "circle", "\n"]
    assert labels[:2] == [IGNORE_INDEX, IGNORE_INDEX]
    assert labels[2:] == ids[2:]


def test_vicuna_v1_masks_instructions_on_a_hand_checked_example(word_tok):
    ids, labels = tokenize_conversation(VICUNA, CONVERSATION, word_tok, has_image=True)
    system = [
        "A",
        "chat",
        "between",
        "a",
        "curious",
        "user",
        "and",
        "an",
        "artificial",
        "intelligence",
        "assistant",
        ".",
        "The",
        "assistant",
        "gives",
        "helpful",
        ",",
        "detailed",
        ",",
        "and",
        "polite",
        "answers",
        "to",
        "the",
        "user",
        "'",
        "s",
        "questions",
        ".",
    ]
    expected = [
        ("<s>", False),
        *[(w, False) for w in system],
        ("USER", False),
        (":", False),
        ("<IMG>", False),
        ("\n", False),
        ("What", False),
        ("colour", False),
        ("?", False),
        ("ASSISTANT", False),
        (":", False),
        ("Red", True),
        (".", True),
        ("</s>", True),
        ("USER", False),
        (":", False),
        ("Shape", False),
        ("?", False),
        ("ASSISTANT", False),
        (":", False),
        ("A", True),
        ("square", True),
        (".", True),
        ("</s>", True),
    ]
    assert tokens(word_tok, ids) == [t for t, _ in expected]
    assert [lab != IGNORE_INDEX for lab in labels] == [target for _, target in expected]
    assert ids.count(IMAGE_TOKEN_INDEX) == 1
    assert word_tok.convert_tokens_to_ids("</s>") == word_tok.eos_token_id


def test_text_only_sample_has_no_image_token(word_tok):
    turns = [Turn("human", "What colour?"), Turn("gpt", "Red.")]
    ids, labels = tokenize_conversation(VICUNA, turns, word_tok, has_image=False)
    assert IMAGE_TOKEN_INDEX not in ids
    assert targets(word_tok, ids, labels) == ["Red", ".", "</s>"]


def test_leading_gpt_turn_is_dropped_and_stray_placeholders_removed(word_tok):
    turns = [Turn("gpt", "Red."), *CONVERSATION[:2]]
    ids, labels = tokenize_conversation(VICUNA, turns, word_tok, has_image=False)
    assert IMAGE_TOKEN_INDEX not in ids
    assert targets(word_tok, ids, labels) == ["Red", ".", "</s>"]


def test_unpaired_turns_are_rejected(word_tok):
    with pytest.raises(ValueError, match="human/gpt pairs"):
        tokenize_conversation(VICUNA, CONVERSATION[:3], word_tok, has_image=True)
    with pytest.raises(ValueError, match="expected 'gpt'"):
        tokenize_conversation(VICUNA, [CONVERSATION[0], CONVERSATION[2]], word_tok, True)


def test_qwen2_chatml_is_registered_and_masks_answers(word_tok):
    qwen = get_template("qwen2")
    ids, labels = tokenize_conversation(qwen, CONVERSATION, word_tok, has_image=True)
    assert ids[0] == word_tok.convert_tokens_to_ids("<|im_start|>")  # no BOS for Qwen
    assert targets(word_tok, ids, labels) == [
        "Red",
        ".",
        "<|im_end|>",
        "A",
        "square",
        ".",
        "<|im_end|>",
    ]


def test_unknown_template_lists_the_known_ones():
    with pytest.raises(KeyError, match="vicuna_v1"):
        get_template("llama3")
    assert {"plain", "vicuna_v1", "qwen2"} <= set(TEMPLATES)


@pytest.fixture(scope="module")
def bpe_tok():
    corpus = ["What colour is the shape? It is red. A square on the left.", "Red. A circle."]
    return train_tokenizer(corpus * 4, vocab_size=300)


def test_byte_level_bpe_targets_decode_to_the_answers(bpe_tok):
    ids, labels = tokenize_conversation(VICUNA, CONVERSATION, bpe_tok, has_image=True)
    answer_ids = [i for i, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX]
    # Targets are exactly the answer tokens (a space merged into an answer's first word would
    # count as the answer's) and the closing </s> of each round.
    assert bpe_tok.decode(answer_ids).strip() == "Red.</s> A square.</s>"
    assert ids[0] == bpe_tok.bos_token_id and labels[0] == IGNORE_INDEX


@pytest.mark.parametrize("name", ["vicuna_v1", "plain", "qwen2"])
def test_generation_prompt_is_a_prefix_of_the_training_ids(bpe_tok, name):
    template = get_template(name)
    turns = CONVERSATION[:2]
    ids, labels = tokenize_conversation(template, turns, bpe_tok, has_image=True)
    prompt = tokenize_prompt(template, turns[0].text, bpe_tok, has_image=True)
    assert ids[: len(prompt)] == prompt
    assert all(lab == IGNORE_INDEX for lab in labels[: len(prompt)])
    assert any(lab != IGNORE_INDEX for lab in labels[len(prompt) :])


# ---- the LLM's own turn markers (issue 22) -----------------------------------------------------
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chatml_tokenizer() -> PreTrainedTokenizerFast:
    """Qwen2-style: ``<|endoftext|>`` EOS, ``<|im_end|>`` closing each turn of its chat template."""
    tok = word_tokenizer([*TEXTS, "system user assistant You are a helpful assistant."])
    tok.add_special_tokens({"eos_token": "<|endoftext|>"})
    tok.chat_template = CHATML
    return tok


@pytest.mark.parametrize("chat", [False, True], ids=["instruct eos", "base with chat template"])
def test_vicuna_v1_on_a_llama3_tokenizer_is_refused_naming_both_markers(chat):
    tok = llama3_tokenizer("<|end_of_text|>" if chat else "<|eot_id|>", chat=chat)
    assert len(tok("</s>", add_special_tokens=False)["input_ids"]) == 4  # "<", "/", "s", ">"
    with pytest.raises(ConfigError) as info:
        check_turn_markers(VICUNA, tok, "org/llama3", "train.stage2.template")
    message = str(info.value)
    assert info.value.key == "train.stage2.template"
    assert "template 'vicuna_v1'" in message and "'</s>'" in message and "4 tokens" in message
    assert "'<|eot_id|>'" in message and "org/llama3" in message
    if chat:
        assert "end of turn '<|eot_id|>'" in message and "EOS '<|end_of_text|>'" in message
        assert "use template: auto" in message  # its chat template is the fix


def test_a_marker_that_is_one_token_but_not_the_end_is_refused_naming_the_template_that_fits(
    word_tok,
):
    """word_tok knows <|im_end|> as one special token, but its end is </s> (Llama 2/Vicuna)."""
    with pytest.raises(ConfigError, match="not an end token.*use template: vicuna_v1"):
        check_turn_markers(get_template("qwen2"), word_tok, "lmsys/vicuna", "train.template")
    with pytest.raises(ConfigError, match="no registered template ends turns with it"):
        check_turn_markers(get_template("qwen2"), llama3_tokenizer(), "llama3", "train.template")


def test_templates_on_their_own_tokenizers_pass(word_tok):
    check_turn_markers(VICUNA, word_tok, "vicuna", "train.template")
    check_turn_markers(get_template("qwen2"), chatml_tokenizer(), "qwen", "train.template")
    # plain writes no turn marker (a stage-1 caption ends with a newline, as in LLaVA).
    check_turn_markers(get_template("plain"), llama3_tokenizer(), "llama3", "train.template")


def _target_runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    """The maximal runs of consecutive target tokens."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(ids, labels, strict=True):
        target = label != IGNORE_INDEX
        if target:
            assert label == token
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = target
    return runs


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_masks_cover_exactly_the_assistant_turns_ending_with_the_models_end_token(word_tok, name):
    """For every registered template, on a tokenizer whose end token it writes: one target run
    per answer, each the answer's tokens followed by the model's own end token."""
    template = get_template(name)
    tok = chatml_tokenizer() if name == "qwen2" else word_tok
    check_turn_markers(template, tok, name, "train.template")
    turns = CONVERSATION[:2] if name == "plain" else CONVERSATION
    ids, labels = tokenize_conversation(template, turns, tok, has_image=True)
    answers = [t.text for t in turns if t.role == "gpt"]
    runs = _target_runs(ids, labels)
    assert len(runs) == len(answers)
    end = template.turn_end or "\n"
    end_id = tok.convert_tokens_to_ids(end)
    if template.turn_end is not None:
        assert end in model_end_tokens(tok).values()
    for run, answer in zip(runs, answers, strict=True):
        assert run[-1] == end_id and end_id not in run[:-1]
        words = tok(answer, add_special_tokens=False)["input_ids"]
        assert run[:-1] == words, (tok.convert_ids_to_tokens(run), answer)


# ---- template: auto (the tokenizer's own chat template; issue 28, scope 3) ----------------------
TWIN_TEXTS = ["What colour? Red. Shape? A square. Describe the picture."] * 4


@pytest.fixture(scope="module", params=["llama3", "qwen2", "qwen3"])
def twin_tok(request) -> PreTrainedTokenizerFast:
    """The tiny twin's tokenizer: that architecture's special tokens and chat template."""
    from vislaw.vlm.random_llm import TINY_ARCHS

    return train_tokenizer(TWIN_TEXTS, 400, TINY_ARCHS[request.param])


TWIN_END = {"<|begin_of_text|>": "<|eot_id|>", None: "<|im_end|>"}


def test_auto_masks_exactly_the_assistant_turns_with_the_models_own_end_token(twin_tok):
    """The trained text is the chat template's own render (with <image> spliced in the first
    user turn), and the targets are the answers each followed by its end-of-turn token."""
    template = get_template("auto", twin_tok)
    end = TWIN_END[twin_tok.bos_token]
    assert template.turn_end == template.stop == end
    ids, labels = tokenize_conversation(template, CONVERSATION, twin_tok, has_image=True)
    assert ids.count(IMAGE_TOKEN_INDEX) == 1
    messages = [
        {"role": "user", "content": "<image>\nWhat colour?"},
        {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "Shape?"},
        {"role": "assistant", "content": "A square."},
    ]
    rendered = twin_tok.apply_chat_template(messages, tokenize=False)
    cut = ids.index(IMAGE_TOKEN_INDEX)
    text = twin_tok.decode(ids[:cut]) + "<image>" + twin_tok.decode(ids[cut + 1 :])
    assert text == rendered
    runs = _target_runs(ids, labels)
    assert [twin_tok.decode(run) for run in runs] == [f"Red.{end}", f"A square.{end}"]
    assert all(run[-1] == twin_tok.convert_tokens_to_ids(end) for run in runs)
    assert IMAGE_TOKEN_INDEX not in [lab for lab in labels if lab != IGNORE_INDEX]


def test_auto_prompt_is_the_training_text_up_to_the_first_answer(twin_tok):
    """Evaluation prompts use add_generation_prompt and tokenize as the training text does."""
    template = get_template("auto", twin_tok)
    ids, labels = tokenize_conversation(template, CONVERSATION[:2], twin_tok, has_image=True)
    prompt = tokenize_prompt(template, "What colour?", twin_tok, has_image=True)
    first = next(i for i, lab in enumerate(labels) if lab != IGNORE_INDEX)
    assert prompt == ids[:first]
    assert twin_tok.decode(prompt[-3:]).endswith("\n")  # the assistant header is in the prompt


def test_auto_without_a_chat_template_is_refused_naming_the_key(word_tok):
    from vislaw.vlm.chat_templates import resolve_template

    with pytest.raises(ConfigError, match=r"template 'auto'.*org/vicuna.*no chat template") as info:
        resolve_template("auto", word_tok, "org/vicuna", "train.stage2.template")
    assert info.value.key == "train.stage2.template"
    assert resolve_template("auto", chatml_tokenizer(), "qwen", "k").turn_end == "<|im_end|>"


def test_a_chat_template_that_rewrites_an_answer_is_refused_not_mismasked():
    tok = chatml_tokenizer()
    upper = "message['content'] if message['role'] == 'user' else message['content'] | upper"
    tok.chat_template = CHATML.replace("message['content']", upper)
    with pytest.raises(ValueError, match="does not render the assistant message text 'Red.'"):
        tokenize_conversation(get_template("auto", tok), CONVERSATION, tok, has_image=True)
    tok.chat_template = CHATML.replace("}}<|im_end|>", "}} square.<|im_end|>")
    with pytest.raises(ValueError, match=r"writes ' square\.' between an answer and '<\|im_end"):
        tokenize_conversation(get_template("auto", tok), CONVERSATION, tok, has_image=True)


def test_generation_stops_at_the_chat_templates_end_of_turn_as_well_as_eos():
    """A base Llama 3 (EOS <|end_of_text|>) with its chat template closes answers with
    <|eot_id|>: generation under auto stops at both; vicuna_v1 on Vicuna only at </s>."""
    from vislaw.vlm.chat_templates import stop_token_ids

    tok = llama3_tokenizer("<|end_of_text|>", chat=True)
    ids = stop_token_ids(get_template("auto", tok), tok)
    assert ids == tok.convert_tokens_to_ids(["<|end_of_text|>", "<|eot_id|>"])
    word = word_tokenizer(TEXTS)
    assert stop_token_ids(VICUNA, word) == word.eos_token_id
    assert stop_token_ids(get_template("plain"), word) == word.eos_token_id


def test_auto_masks_an_answer_that_repeats_the_system_prompt_where_it_is_answered():
    """Qwen2.5's default system prompt says "You are a helpful assistant."; an answer with
    that text (to a question that appears there too) is the target, not the system prompt."""
    from vislaw.vlm.random_llm import TINY_ARCHS

    tok = train_tokenizer(TWIN_TEXTS, 400, TINY_ARCHS["qwen2"])
    turns = [Turn("human", "Qwen"), Turn("gpt", "You are a helpful assistant.")]
    ids, labels = tokenize_conversation(get_template("auto", tok), turns, tok, has_image=False)
    runs = _target_runs(ids, labels)
    assert [tok.decode(run) for run in runs] == ["You are a helpful assistant.<|im_end|>"]
    first = next(i for i, lab in enumerate(labels) if lab != IGNORE_INDEX)
    assert tok.decode(ids[:first]).endswith(
        "<|im_start|>user\nQwen<|im_end|>\n<|im_start|>assistant\n"
    )
