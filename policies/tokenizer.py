"""Instruction tokenizers that never touch a hub.

Two kinds, one call site (``load_tokenizer``):

- **word level (default)**: a ``tokenizers`` WordLevel model over a fixed vocabulary. Text is
  NFD-normalised, accents stripped, lower-cased, split on whitespace/punctuation, and numbers are
  split into single digits, so every string tokenizes; words outside the vocabulary become
  ``[UNK]`` (never an error). The vocabulary is the word list below (every LIBERO instruction word,
  the tabletop suite's words and a general manipulation list). The list a policy was trained with
  is saved inside its checkpoint (in the ``vla_tokenizer_processor`` step of
  ``policy_preprocessor.json``), so editing this file never breaks an old checkpoint.
- **local HF tokenizer**: ``tokenizer_path`` = any local directory ``AutoTokenizer`` can read (for
  example the installed all-MiniLM-L6-v2 WordPiece tokenizer, or the tokenizer of a local
  ``backbone_path`` model). Loaded with ``local_files_only=True``.
"""

from __future__ import annotations

from pathlib import Path

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN)

# Every word of the LIBERO instructions (bddl `:language` fields of all suites).
_LIBERO_WORDS = """
akita alphabet and at back basket bbq between black book both bottle bottom bowl box butter cabinet
caddy center cheese chocolate close compartment cookies cream drawer dressing from front frying in
inside it juice ketchup layer left microwave middle milk moka mug next of off on open orange pan pick
place plate pot pots pudding push put rack ramekin red right salad sauce shelf soup stack stove table
the them to tomato top tray turn under up white wine wooden yellow
"""

# A general manipulation vocabulary: verbs, objects, colours, shapes, places, relations.
_GENERAL_WORDS = """
a an the this that these those its their your my all any each every other another one two three
four five six seven eight nine ten first second third last next same different
is are be was please then after before while until when where into onto out over above below behind
near far beside by with without for against along around through across toward towards away down
upward downward forward backward side sides edge corner far near closer farther
pick grasp grab take lift raise lower drop release hold carry move moving place put set lay stack
unstack push pull slide open close shut turn rotate twist flip tilt pour insert remove reach touch
press poke wipe clean sort arrange align line gather collect fetch bring give hand return leave go
store hide cover uncover fold unfold hang wrap swap switch swing knock tip spin roll shake scoop
put place keep stay stop start finish try find
block blocks cube cubes ball balls cylinder cylinders can cans cup cups mug mugs bowl bowls plate
plates dish dishes bottle bottles box boxes lid lids jar jars tray trays basket baskets bin bins bag
bags book books pen pencil marker eraser spoon fork knife spatula ladle whisk sponge towel cloth
apple apples banana bananas orange lemon lime pear peach grape carrot corn potato tomato egg bread
cake cookie cookies candy can soda water milk juice coffee tea wine beer kettle pot pan lid stove oven
microwave fridge refrigerator sink faucet tap cabinet drawer door handle knob button switch lever
shelf rack table desk counter floor wall chair stool peg pegs hole holes slot slots ring rings rod
rods nut bolt screw key lock toy toys block brick bricks piece pieces object objects item items thing
things target goal region area zone spot position location pad mat coaster platform base stand
container target bucket bin box
red green blue yellow orange purple pink brown black white gray grey silver gold cyan magenta violet
dark light bright pale
big bigger biggest small smaller smallest large larger largest tiny huge tall short long wide narrow
round square flat thin thick heavy empty full half whole
left right middle center centre top bottom front back upper lower inner outer inside outside
leftmost rightmost topmost nearest farthest closest
on in at of to from up off
and or but not no yes so
"""

# The built-in tabletop suite's words (sim/tabletop task instructions).
_TABLETOP_WORDS = """
cube cubes block blocks target zone goal pad marker bin tray button drawer lever slider knob
stack unstack push press lift pick place put move slide open close reach
red green blue yellow purple orange
left right middle center front back
"""

_PUNCTUATION = [".", ",", "!", "?", "'", "-", ":", ";", "(", ")", "/", "&"]
_DIGITS = [str(d) for d in range(10)]


def default_vocab() -> list[str]:
    """The default word list (no special tokens), deduplicated, in a stable order."""
    seen: dict[str, None] = {}
    for block in (_LIBERO_WORDS, _TABLETOP_WORDS, _GENERAL_WORDS):
        for word in block.split():
            seen.setdefault(word.lower(), None)
    for tok in [*_DIGITS, *_PUNCTUATION]:
        seen.setdefault(tok, None)
    return list(seen)


def build_word_tokenizer(vocab: list[str]):
    """A ``PreTrainedTokenizerFast`` over ``vocab`` (special tokens [PAD]=0, [UNK]=1 prepended)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [w for w in vocab if w not in SPECIAL_TOKENS]
    if len(set(words)) != len(words):
        dupes = sorted({w for w in words if words.count(w) > 1})
        raise ValueError(f"tokenizer vocabulary has duplicate words: {dupes[:10]}")
    table = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *words])}
    tok = Tokenizer(models.WordLevel(vocab=table, unk_token=UNK_TOKEN))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=UNK_TOKEN, pad_token=PAD_TOKEN)


def load_tokenizer(tokenizer_path: str | None = None, vocab: list[str] | None = None):
    """The instruction tokenizer: a local HF tokenizer dir if given, else the word-level one."""
    if tokenizer_path:
        path = Path(tokenizer_path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"tokenizer_path '{path}' is not a directory (expected a local HF tokenizer)")
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if tok.pad_token is None:  # decoder-only LM tokenizers often lack one
            tok.pad_token = tok.eos_token or tok.unk_token
        return tok
    return build_word_tokenizer(default_vocab() if vocab is None else list(vocab))


def tokenizer_size(tokenizer_path: str | None = None, vocab: list[str] | None = None) -> int:
    """Number of ids the tokenizer can emit (the backbone's embedding table needs at least this many)."""
    if not tokenizer_path:
        return len(SPECIAL_TOKENS) + len(default_vocab() if vocab is None else vocab)
    return len(load_tokenizer(tokenizer_path))
