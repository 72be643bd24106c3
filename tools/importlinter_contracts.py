"""An import-linter contract: some packages may import only the library's public modules.

A module is private when any part of its dotted name starts with an underscore
(``rollback_drill.timing._pacing``). import-linter's wildcards replace whole names
only, so "anything starting with _" needs a contract of its own.
"""

from __future__ import annotations

from typing import Any

from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


class PublicOnlyContract(Contract):
    source_modules = fields.ListField(subfield=fields.StringField())
    library = fields.StringField()

    def check(self, graph: Any, verbose: bool) -> ContractCheck:  # noqa: ARG002 - import-linter calls it so
        library = str(self.library)  # type: ignore[attr-defined]
        violations = []
        for source_root in self.source_modules:  # type: ignore[attr-defined]
            sources = {str(source_root)} | set(graph.find_descendants(str(source_root)))
            for importer in sorted(sources):
                for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                    if not (imported == library or imported.startswith(library + ".")):
                        continue
                    if any(part.startswith("_") and part != "__init__" for part in imported.split(".")):
                        violations.append((importer, imported))
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        from importlinter.application import output  # noqa: PLC0415 - only needed when broken

        for importer, imported in check.metadata["violations"]:
            output.print_error(f"{importer} imports private module {imported}; use the library's public API instead")
