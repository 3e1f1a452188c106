"""Our VLM as an lmms-eval model (``--model vislaw``), registered by entry point, not by edits.

lmms-eval hands a "simple" model raw requests (``Instance.args``):

- ``generate_until``: ``(context, gen_kwargs, doc_to_visual, doc_id, task, split)``. We answer
  greedily, in batches of ``batch_size`` prompts sharing the same generation settings, and cut
  each answer at the first stop sequence (the task's ``until`` plus the template's own stop).
- ``loglikelihood``: ``(context, continuation, doc_to_visual, doc_id, task, split)``, one request
  per option of a multiple-choice question. We return the *negative* log-likelihood of the
  continuation (summed over its tokens) and whether greedy decoding would have produced it.
  Negative because lmms-eval 0.7.x picks the option with ``argmin`` (its built-in LLaVA models
  return the loss; lmms-eval issue #370), so the most likely option must carry the smallest
  number.

The prompt is built exactly as in training (vislaw.vlm.chat_templates): the context is the user
turn, ``<image>`` opens it when the document has an image, and the continuation is the
assistant's answer, tokenized in one string with the prompt. Documents with several images use
the first (the LLaVA-1.5 recipe has one image per conversation); ``multi_image_docs`` records
them per task, and the runner counts them in the log and the results JSON.

Model arguments (``--model_args k=v,...``): ``pretrained`` (a stage folder of ours with
``vlm.json``, or a released LLaVA-1.5 folder together with ``config`` + ``encoder`` naming the
vision encoder in a workflow config), ``device``, ``dtype`` (float32, bfloat16, float16),
``batch_size``, ``max_new_tokens`` (caps every task's generation length; handy on CPU).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms
from tqdm import tqdm

from vislaw.vlm.chat_templates import IGNORE_INDEX, Segment, tokenize_segments
from vislaw.vlm.checkpoints import INFO_FILE
from vislaw.vlm.inference import LoadedVlm, load_vlm
from vislaw.vlm.llava import import_llava
from vislaw.vlm.model import map_pixels

log = logging.getLogger(__name__)

# C0 control characters but tab, newline and carriage return: a model can decode them (byte-
# fallback tokens), and lmms-eval's MMBench export (openpyxl) refuses a cell holding one, which
# failed the whole benchmark (found by the rehearsal, an untrained twin's answers).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_MAX_NEW_TOKENS = 128


class ScoredContinuation(GenerationResult):
    """A loglikelihood answer ``(nll, is_greedy)`` that survives lmms-eval 0.7.3's evaluator.

    The evaluator passes every model output through ``unwrap_generation_output``, which keeps a
    ``GenerationResult``'s ``text`` as is but turns a bare ``(float, bool)`` tuple into its
    string, so multiple-choice scoring then fails on every model. Wrapped, the tuple reaches
    ``process_results`` intact.
    """


@dataclass(frozen=True)
class _Request:
    context: str
    extra: Any  # continuation (loglikelihood) or generation kwargs (generate_until)
    doc: Any
    doc_to_visual: Any  # callable(doc) -> list of images, or None
    image_key: tuple  # (task, split, doc_id): an image is read and encoded once per batch


def _images(
    batch: Sequence[_Request], multi: dict[str, set] | None = None
) -> tuple[list[Any], list[int | None]]:
    """The batch's distinct images (read now, one batch at a time, not the whole task) and, per
    request, the index of its image or None. Several images: the first is used, and the
    document is added to ``multi[task]`` (LLaVA-1.5 was trained with one image per
    conversation; docs/evaluation.md)."""
    index: dict[tuple, int | None] = {}
    images: list[Any] = []
    for r in batch:
        if r.image_key in index:
            continue
        visuals = r.doc_to_visual(r.doc) if r.doc_to_visual is not None else None
        visuals = [v for v in (visuals or []) if v is not None]
        if len(visuals) > 1:
            task, split, doc_id = r.image_key
            seen = multi[task] if multi is not None else set()
            if (split, doc_id) not in seen:  # once per document, not per request
                seen.add((split, doc_id))
                log.warning(
                    "%s doc %s has %d images; the first is used", task, doc_id, len(visuals)
                )
        index[r.image_key] = len(images) if visuals else None
        if visuals:
            images.append(visuals[0])
    return images, [index[r.image_key] for r in batch]


def load_model(
    pretrained: str | Path,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    config: str | Path | None = None,
    encoder: str | None = None,
    work_dir: str | Path | None = None,
) -> LoadedVlm:
    """Our stage folder as is; a released LLaVA folder converted first, into a temporary folder
    (under ``work_dir`` if given) that is removed once the model is in memory.

    The released format names its vision tower by hub id only, so it needs ``config`` and
    ``encoder`` to say which of our encoder specs (family, input size, layer) it was trained on;
    given for our own folder, they name the spec its ``vlm.json`` must record.
    """
    folder = Path(pretrained)
    if (folder / INFO_FILE).is_file():
        spec = None
        if config and encoder:  # then the folder must record that encoder's spec
            from vislaw.config import load_config
            from vislaw.encoders.registry import encoder_spec, resolve_encoders

            spec = encoder_spec(resolve_encoders(load_config(config)), encoder, str(config))
        return load_vlm(folder, device=device, dtype=dtype, spec=spec)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"pretrained={folder}: neither a vislaw stage folder ({INFO_FILE}) nor a LLaVA "
            "folder (config.json)"
        )
    if not (config and encoder):
        raise ValueError(
            f"pretrained={folder} is a released LLaVA folder: pass config=<workflow config> and "
            "encoder=<name in it> so the vision encoder can be rebuilt"
        )
    from vislaw.config import load_config
    from vislaw.encoders.registry import encoder_spec, resolve_encoders

    spec = encoder_spec(resolve_encoders(load_config(config)), encoder, str(config))
    with tempfile.TemporaryDirectory(prefix="vislaw-llava-", dir=work_dir) as tmp:
        target = Path(tmp) / "stage2"
        import_llava(folder, target, spec, stage=2)
        return load_vlm(target, device=device, dtype=dtype)


class VislawLMM(lmms):
    """lmms-eval model wrapping :class:`vislaw.vlm.inference.LoadedVlm`."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        device: str | None = "cpu",
        dtype: str = "float32",
        batch_size: int | str | None = 1,
        max_new_tokens: int | None = None,
        config: str | None = None,
        encoder: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        kwargs.pop("max_batch_size", None)  # lmms-eval passes it to every model; unused here
        if kwargs:
            raise TypeError(f"unknown vislaw model arguments: {sorted(kwargs)}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r}: expected one of {sorted(DTYPES)}")
        self.device = str(device or "cpu")
        if self.device == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per launched rank
            self.device = f"cuda:{os.environ['LOCAL_RANK']}"
        self.batch_size = max(1, int(batch_size or 1))
        self.max_new_tokens = int(max_new_tokens) if max_new_tokens else None
        self.vlm = load_model(pretrained, self.device, DTYPES[dtype], config, encoder)
        self.vlm.model.eval()
        self._warned: set[str] = set()
        # task -> {(split, doc_id)} of documents with several images (the runner reports them)
        self.multi_image_docs: dict[str, set] = defaultdict(set)

    # ---- documents ----------------------------------------------------------------------------
    def _requests(self, requests: Sequence[Instance]) -> list[_Request]:
        out = []
        for req in requests:
            context, extra, doc_to_visual, doc_id, task, split = req.args[:6]
            doc = self.task_dict[task][split][doc_id]
            if callable(extra) and not isinstance(extra, dict):
                extra = extra(doc)  # loglikelihood tasks may pass doc_to_target itself
            out.append(_Request(context, extra, doc, doc_to_visual, (task, split, doc_id)))
        return out

    # ---- loglikelihood -------------------------------------------------------------------------
    def _target_ids(self, context: str, continuation: str, has_image: bool):
        template = self.vlm.template
        segments = [
            Segment(template.prompt(context, has_image), False),
            Segment(continuation, True),
        ]
        return tokenize_segments(segments, self.vlm.tokenizer, template.add_bos)

    @torch.no_grad()
    def _score(self, batch: Sequence[_Request]) -> list[tuple[float, bool]]:
        """(sum of -log p over continuation tokens, all continuation tokens greedy) per request."""
        tokenizer = self.vlm.tokenizer
        images, rows = _images(batch, self.multi_image_docs)
        encoded = [
            self._target_ids(r.context, r.extra, row is not None)
            for r, row in zip(batch, rows, strict=True)
        ]
        length = max(len(ids) for ids, _ in encoded)
        ids = torch.full((len(batch), length), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.long)
        labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
        for b, (row_ids, row_labels) in enumerate(encoded):
            ids[b, : len(row_ids)] = torch.tensor(row_ids)
            labels[b, : len(row_ids)] = torch.tensor(row_labels)
            mask[b, : len(row_ids)] = 1
        pixels = self.vlm.pixels(images) if images else None
        nll, greedy = self.vlm.model.score_continuations(ids, mask, labels, pixels, rows)
        return [(float(n), bool(g)) for n, g in zip(nll.tolist(), greedy.tolist(), strict=True)]

    def loglikelihood(self, requests: list[Instance]) -> list[ScoredContinuation]:
        items = self._requests(requests)
        results: list[ScoredContinuation] = []
        bar = tqdm(total=len(items), desc="vislaw loglikelihood", disable=not items)
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            results += [ScoredContinuation(text=pair) for pair in self._score(batch)]
            bar.update(len(batch))
        bar.close()
        return results

    # ---- generate_until ------------------------------------------------------------------------
    def _generation_settings(self, gen_kwargs: dict[str, Any]) -> tuple[list[str], int]:
        gen_kwargs = dict(gen_kwargs or {})
        until = gen_kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        stops = [s for s in [*until, self.vlm.template.stop] if s]
        wanted = int(gen_kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
        if self.max_new_tokens:
            wanted = min(wanted, self.max_new_tokens)
        sampling = gen_kwargs.get("do_sample") or float(gen_kwargs.get("temperature") or 0) > 0
        if sampling and "sampling" not in self._warned:
            self._warned.add("sampling")
            log.warning("the task asks for sampling; vislaw evaluates greedily")
        return stops, wanted

    @staticmethod
    def cut_at_stops(text: str, stops: Sequence[str]) -> str:
        """``text`` up to the earliest of ``stops`` (the stop itself excluded), without control
        characters (_CONTROL_CHARACTERS), stripped."""
        cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
        return _CONTROL_CHARACTERS.sub("", text[:cut]).strip()

    @torch.no_grad()
    def _generate(self, batch: Sequence[_Request], stops: list[str], max_new: int) -> list[str]:
        vlm = self.vlm
        device = next(vlm.model.llm.parameters()).device
        images, rows = _images(batch, self.multi_image_docs)
        shown = [images[row] if row is not None else None for row in rows]
        inputs = vlm.prompt_batch([r.context for r in batch], shown)
        inputs = {k: map_pixels(lambda t: t.to(device), v) for k, v in inputs.items()}
        out = vlm.model.generate(
            **inputs,
            max_new_tokens=max_new,
            do_sample=False,
            pad_token_id=vlm.tokenizer.pad_token_id,
            eos_token_id=vlm.tokenizer.eos_token_id,
            stop_strings=stops,
            tokenizer=vlm.tokenizer,
        )
        texts = vlm.tokenizer.batch_decode(out, skip_special_tokens=False)
        pad = vlm.tokenizer.pad_token or ""
        return [self.cut_at_stops(t.replace(pad, "") if pad else t, stops) for t in texts]

    def generate_until(self, requests: list[Instance]) -> list[str]:
        items = self._requests(requests)
        # Requests with the same generation settings share batches (lmms-eval's convention).
        groups: dict[str, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            groups[json.dumps(item.extra or {}, sort_keys=True, default=str)].append(i)
        answers: list[str] = [""] * len(items)
        bar = tqdm(total=len(items), desc="vislaw generate", disable=not items)
        for indices in groups.values():
            stops, max_new = self._generation_settings(items[indices[0]].extra)
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                texts = self._generate([items[i] for i in chunk], stops, max_new)
                for i, text in zip(chunk, texts, strict=True):
                    answers[i] = text
                bar.update(len(chunk))
        bar.close()
        return answers

    def clean(self) -> None:
        """lmms-eval calls this after each task's requests. Its default drops the model's
        ``nn.Module`` attributes and runs ``gc.collect`` (~0.6 s a task on CPU); we evaluate
        several tasks with one loaded model, so only the CUDA cache is released."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __repr__(self) -> str:
        return f"VislawLMM({self.vlm.info.encoder.name}, template={self.vlm.info.template})"

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError(
            "vislaw answers single-turn tasks (generate_until, loglikelihood, multiple_choice)"
        )
