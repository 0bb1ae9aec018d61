"""The demo's corpus, built at run time from the Python standard library's docstrings (every
Python installation carries them; no text is shipped or downloaded)."""

import ast
import os
import re
import sysconfig

SKIPPED_DIRS = {"test", "tests", "site-packages", "idlelib", "lib2to3", "__pycache__"}
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`])")


def standard_library_documents(max_documents=0):
    """Docstrings of the standard library's modules, classes and functions, in a fixed order."""
    root = sysconfig.get_paths()["stdlib"]
    documents = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for filename in sorted(f for f in filenames if f.endswith(".py")):
            try:
                with open(os.path.join(dirpath, filename), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                     ast.AsyncFunctionDef)):
                    docstring = ast.get_docstring(node)
                    if docstring and len(docstring) > 80:
                        documents.append(docstring)
                        if len(documents) == max_documents:
                            return documents
    return documents


def document_lines(docstring):
    """One sentence per line, as the corpus format asks."""
    lines = []
    for paragraph in re.split(r"\n\s*\n", docstring):
        text = " ".join(paragraph.split())
        lines.extend(s for s in SENTENCE_END.split(text) if s)
    return lines


def write_corpus(directory, documents, num_files=4):
    os.makedirs(directory)
    for index in range(num_files):
        with open(os.path.join(directory, f"docstrings-{index}.txt"), "w") as f:
            for document in documents[index::num_files]:
                f.write("\n".join(document_lines(document)) + "\n\n")
    return os.path.join(directory, "*.txt")
