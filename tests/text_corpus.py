"""Generated text for the preprocessing tests: seeded, readable-looking, with numbers followed
by commas, accents, punctuation and <eop> marks, so tiny SentencePiece models trained on it
meet every rule of the text handling. Nothing here is real corpus text."""

import os

import numpy as np

_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "be", "da", "fe", "gu", "ho",
              "ji", "po", "qua", "re", "ti", "zo", "é", "ñu")


def sentence(rng):
    words = []
    for _ in range(int(rng.integers(4, 14))):
        word = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(1, 4))))
        if rng.random() < 0.1:
            word = word.capitalize()
        if rng.random() < 0.06:
            word = f"{int(rng.integers(1, 99))},{int(rng.integers(100, 999))},"
        words.append(word)
    text = " ".join(words) + str(rng.choice([".", "!", "?", ".", "."]))
    return text + ("<eop>" if rng.random() < 0.05 else "")


def documents(seed, count, min_sentences=2, max_sentences=12):
    rng = np.random.default_rng(seed)
    return [[sentence(rng) for _ in range(int(rng.integers(min_sentences, max_sentences)))]
            for _ in range(count)]


def write_corpus(directory, seed=0, files=3, documents_per_file=20, **kwargs):
    """Writes `files` text files; returns their documents in file order."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for index in range(files):
        docs = documents(seed * 1000 + index, documents_per_file, **kwargs)
        with open(os.path.join(directory, f"part-{index:02d}.txt"), "w") as f:
            f.write("\n\n".join("\n".join(doc) for doc in docs) + "\n")
        written.append(docs)
    return written


def train_tiny_tokenizer(corpus_dir, output_dir, vocab_size=300, uncased=False):
    """A SentencePiece model with the original special ids, trained on generated text."""
    from preprocessing.train_tokenizer import train_tokenizer

    if not os.path.exists(corpus_dir):
        write_corpus(corpus_dir, seed=99, files=2, documents_per_file=150)
    return train_tokenizer(os.path.join(corpus_dir, "*.txt"), vocab_size, output_dir,
                           uncased=uncased)
