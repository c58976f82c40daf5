#!/usr/bin/env bash
# Checks the relative links of every tracked Markdown file (README.md,
# docs/*.md and the rest): each must name a file or directory inside the
# repository, and a `#fragment` into a Markdown file must name one of its
# headings (GitHub's anchors). Links with a scheme (https:, mailto:) are not
# followed. Prints each broken link as `file:line: link` and exits 1 when
# there is one.
#
# Usage: hack/check-links.sh [FILE.md...]   (default: every tracked *.md)
set -euo pipefail

root=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
cd "$root"

if (($# == 0)); then
  mapfile -t files < <(git ls-files -- '*.md')
else
  files=("$@")
fi

exec python3 - "${files[@]}" <<'PYTHON'
import os
import re
import sys
import unicodedata
from urllib.parse import unquote

ROOT = os.getcwd()
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); the target may hold one level of parentheses.
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|(?:[^()\s]|\([^()\s]*\))*)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s[^>]*(?:name|id)=\"([^\"]+)\"", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def plain_text(heading):
    """The rendered text of a heading: no code marks, links, images, emphasis or HTML."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"(\*+)(\S(?:.*?\S)?)\1", r"\2", text)
    text = re.sub(r"(?<![\w])(_+)(\S(?:.*?\S)?)\1(?![\w])", r"\2", text)
    return text


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    out = []
    for ch in plain_text(heading).strip().lower():
        if ch == " ":
            out.append("-")
        elif ch in "-_" or unicodedata.category(ch)[0] in "LNM":
            out.append(ch)
    return "".join(out)


def scan(path):
    """Yields (line number, text without code spans) outside fenced code, and the anchors."""
    lines, anchors, counts = [], set(), {}
    fence = None
    previous = ""

    def add(heading):
        base = slug(heading)
        n = counts.get(base, 0)
        counts[base] = n + 1
        anchors.add(base if n == 0 else f"{base}-{n}")

    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            m = FENCE.match(line)
            if fence:
                if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip(m.group(1)[0] + " \t"):
                    fence = None
                previous = ""
                continue
            if m:
                fence = m.group(1)
                previous = ""
                continue
            if (h := ATX.match(line)):
                add(h.group(2) or "")
            elif SETEXT.match(line) and previous.strip() and not previous.lstrip().startswith(("-", "*", "+", "|", ">")):
                add(previous.strip())
            anchors.update(HTML_ANCHOR.findall(line))
            lines.append((number, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)))
            previous = line
    return lines, anchors


cache = {}


def anchors_of(path):
    if path not in cache:
        cache[path] = scan(path)[1]
    return cache[path]


def broken(source, target):
    """Why `target`, linked from `source`, does not resolve; None when it does."""
    if target.startswith("<") and target.endswith(">"):
        target = target[1:-1]
    if not target or SCHEME.match(target) or target.startswith("//"):
        return None
    path, _, fragment = target.partition("#")
    path = unquote(path)
    if not path:
        dest = source
    elif path.startswith("/"):
        dest = os.path.normpath(os.path.join(ROOT, path.lstrip("/")))
    else:
        dest = os.path.normpath(os.path.join(os.path.dirname(os.path.join(ROOT, source)), path))
    if os.path.commonpath([ROOT, os.path.join(ROOT, dest)]) != ROOT:
        return "outside the repository"
    if not os.path.exists(os.path.join(ROOT, dest)):
        return "no such file"
    if fragment and dest.endswith(".md") and os.path.isfile(os.path.join(ROOT, dest)):
        if unquote(fragment) not in anchors_of(os.path.relpath(os.path.join(ROOT, dest), ROOT)):
            return "no such heading"
    return None


failures = 0
for source in sys.argv[1:]:
    lines, anchors = scan(source)
    cache[source] = anchors
    for number, text in lines:
        targets = [m.group(1) for m in INLINE.finditer(text)]
        if (d := DEFINITION.match(text)):
            targets.append(d.group(1))
        for target in targets:
            if broken(source, target):
                print(f"{source}:{number}: {target}")
                failures += 1

if failures:
    print(f"check-links: {failures} broken link(s)", file=sys.stderr)
    sys.exit(1)
PYTHON
