"""Getting the benchmarks' data (`cirbench data get`): per-dataset manifests of official sources
(package data, resources/manifests/NAME.json), resumable verified downloads, safe archive extraction
into the layout cirbench reads, and a record of what was fetched (``.cirbench-sources.json`` in the
dataset folder) that `cirbench data check` compares the files with later.

    manifests  read and check a manifest (the JSON the issue tracker describes), mirror rewriting
    transfer   HTTP(S) downloads that resume with Range requests and move a file into place only when
               its size and sha256 are right
    unpack     zip/tar extraction into a temporary folder, member paths checked, moved when complete
    get        one dataset: what is done, disk space, download, verify, extract, record; manual steps
    record     the sources record and its check

May import: cirbench.errors, cirbench.util.
"""
