"""The error for a data set that is not on disk, with the command that fetches it."""
from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A data set that is not on disk; the message gives the command that fetches it."""

    @classmethod
    def missing(cls, what: str, root, detail: str, fetch: str, *, downloadable: bool = True,
                alternative: str = "", env: str = "NCBENCH_DATA") -> DatasetNotFoundError:
        """The one message for every data set that is not on disk: what, where, what is missing, the
        command that fetches it, `--download` when ncbench can fetch it, and where else to look."""
        ways = f"or pass --download to `ncbench run` (download=True in load_dataset) to fetch it into {root}; " \
            if downloadable else ""
        return cls(f"{what} was not found in {root}: {detail}.\nFetch it on a machine with internet with\n"
                   f"    {fetch}\n{alternative}{ways}set --data-dir or ${env} to read it from another directory.")
