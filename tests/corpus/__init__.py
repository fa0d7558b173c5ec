"""A corpus of bad and hostile inputs, each with the outcome aligncore must give.

Every case builds its inputs in a fresh directory and runs the ``aligncore``
command line in-process (``aligncore.cli.main``). The harness
(:mod:`corpus.harness`) then checks what every case must satisfy: no
traceback, the expected exit code and message, no input modified, no partial
or temporary file left behind. Cases live in the ``cases_*.py`` modules of this
package, grouped by what they break; ``docs/reliability.md`` is rendered from
them (``python tests/corpus/render.py``).
"""
