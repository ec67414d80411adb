"""Guaranteed-parseable answers (opt-in, `constrain_answer`): the reasoning is free, the answer block is not.

Beyond the reference (which samples freely and scores an unparseable answer 0): once a completion has
written `<answer>`, every next token must keep the text inside ANSWER_GRAMMAR, the JSON shape the prompt asks
for (```` ```json[{"bbox_2d": [x1,y1,x2,y2], "positive_points": [[x,y],[x,y]]}, ...]``` ```` then
`</answer>`, `[]` allowed), and after `</answer>` only an end token may follow. The grammar work is done by
xgrammar (a maintained grammar-constrained decoding library: its compiler turns the EBNF into a token mask
for this tokenizer, its matcher follows each row); this module only decides *where* the constraint starts,
which a plain `xgrammar.contrib.hf.LogitsProcessor` cannot (it constrains from the first token).

Off by default: measured only with an unfitted tiny model so far (README, scripts/measure_constrained.py),
not with the published weights. Needs `pip install "xgrammar>=0.2,<0.3"` (the `constrain` extra).
"""

from __future__ import annotations

from typing import Any

#: The answer block after `<answer>`, in xgrammar's EBNF. Coordinates are integers (the weights write
#: integers in the 840 frame), up to 4 digits; blanks between tokens are bounded so the model cannot stall.
ANSWER_GRAMMAR = r"""
root ::= ws "```json" ws list ws "```" ws "</answer>"
list ::= "[" ws "]" | "[" ws instance (ws "," ws instance)* ws "]"
instance ::= "{" ws "\"bbox_2d\"" ws ":" ws box ws "," ws "\"positive_points\"" ws ":" ws points ws "}"
box ::= "[" ws num ws "," ws num ws "," ws num ws "," ws num ws "]"
points ::= "[" ws point ws "," ws point ws "]"
point ::= "[" ws num ws "," ws num ws "]"
num ::= [0-9] | [1-9] [0-9] | [1-9] [0-9] [0-9] | [1-9] [0-9] [0-9] [0-9]
ws ::= "" | [ \n] | [ \n] [ \n]
"""

ANSWER_OPEN = "<answer>"
#: Tokens decoded at the end of a row to look for ANSWER_OPEN (it spans a few tokens).
_TAIL_TOKENS = 12

_compiled: dict[tuple[int, int], Any] = {}


def _xgrammar():
    try:
        import xgrammar
    except ImportError as e:  # an optional feature: say what to install
        from .errors import BadInput

        raise BadInput(
            'constrain_answer needs the xgrammar package: pip install "xgrammar>=0.2,<0.3".',
            code="constrain_unavailable",
        ) from e
    return xgrammar


def compiled_answer_grammar(tokenizer, vocab_size: int, stop_token_ids: list[int]):
    """ANSWER_GRAMMAR compiled for this tokenizer and logits width (cached: compiling takes a while)."""
    key = (id(tokenizer), vocab_size)
    if key not in _compiled:
        xgr = _xgrammar()
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids)
        _compiled[key] = xgr.GrammarCompiler(info).compile_grammar(ANSWER_GRAMMAR)
    return _compiled[key]


class AnswerConstraint:
    """A transformers logits processor: rows are free until they write `<answer>`, then follow the grammar.

    `in_answer` / `answer_so_far`: rows whose prompt already ends inside the answer block (the forced answer
    pass), with the answer text written so far.
    """

    def __init__(
        self,
        tokenizer,
        stop_token_ids: list[int],
        batch: int,
        in_answer: bool = False,
        answer_so_far: list[str] | None = None,
    ):
        self.tokenizer = tokenizer
        self.stop_token_ids = list(stop_token_ids)
        self.batch = batch
        self.start_in_answer = in_answer
        self.answer_so_far = answer_so_far or [""] * batch
        self.prompt_len: int | None = None
        self.matchers: list = [None] * batch
        self.failed = [False] * batch  # the text after `<answer>` left the grammar before we could follow it
        self.bitmask = None
        self.masked_steps = 0

    def _start(self, row: int, written: str, compiled) -> None:
        xgr = _xgrammar()
        m = xgr.GrammarMatcher(compiled, override_stop_tokens=self.stop_token_ids)
        if written and not m.accept_string(written):
            self.failed[row] = True
            return
        self.matchers[row] = m

    def __call__(self, input_ids, scores):
        xgr = _xgrammar()
        vocab = scores.shape[-1]
        compiled = compiled_answer_grammar(self.tokenizer, vocab, self.stop_token_ids)
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
            if self.start_in_answer:
                for row in range(self.batch):
                    self._start(row, self.answer_so_far[row], compiled)
        else:
            for row in range(self.batch):
                last = int(input_ids[row, -1])
                m = self.matchers[row]
                if m is not None:
                    if not m.is_terminated() and not m.accept_token(last):
                        self.matchers[row], self.failed[row] = None, True
                elif not self.failed[row]:
                    tail_ids = input_ids[row, max(self.prompt_len, input_ids.shape[1] - _TAIL_TOKENS) :].tolist()
                    tail = self.tokenizer.decode(tail_ids, skip_special_tokens=False)
                    if ANSWER_OPEN in tail:
                        self._start(row, tail.split(ANSWER_OPEN)[-1], compiled)
        rows = [r for r, m in enumerate(self.matchers) if m is not None and not m.is_terminated()]
        if not rows:
            return scores
        if self.bitmask is None:
            self.bitmask = xgr.allocate_token_bitmask(self.batch, vocab)
        for r in rows:
            self.matchers[r].fill_next_token_bitmask(self.bitmask, r)
        xgr.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device), indices=rows)
        self.masked_steps += len(rows)
        return scores


def answer_constraint(
    tokenizer, stop_token_ids: list[int], batch: int, in_answer: bool = False, answer_so_far: list[str] | None = None
):
    """The logits-processor list for one `generate` call (see AnswerConstraint)."""
    from transformers import LogitsProcessorList

    return LogitsProcessorList([AnswerConstraint(tokenizer, stop_token_ids, batch, in_answer, answer_so_far)])
