"""The shard table: a DataTable kept in step with the view model by keyed diffs.

Rules learned the hard way on Textual 8.2 (design.md, "Console lessons"): fixed column widths (no
re-measuring on update), update only cells whose text changed, never clear-and-refill on a tick,
and find the cursor's shard by key again after every sort or insert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.events import Resize
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowDoesNotExist

from shardtui.tui.columns import SORT_COLUMN, Cell, Column, columns_for_width, sort_arrow
from shardtui.tui.model import ConsoleModel

#: Past this many removals one rebuild is cheaper than removing rows one by one.
REBUILD_THRESHOLD = 200


class IdCell:
    """The shard-id cell: renders as text but remembers its shard, so sorting can use the model."""

    __slots__ = ("sid", "text")

    def __init__(self, sid: int, text: Text) -> None:
        self.sid = sid
        self.text = text

    def __rich__(self) -> Text:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdCell) and other.sid == self.sid and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.sid)


class ShardTable(DataTable):
    """One row per visible shard, keyed by shard id (as a string)."""

    # DataTable's home/end scroll sideways, which a table that fits the terminal never needs; operators
    # (htop, k9s, less) expect them, and g/G, to jump to the first and last shard.
    BINDINGS = [
        Binding("home,g", "first_row", "First shard", id="first_row", key_display="home g", show=False),
        Binding("end,G", "last_row", "Last shard", id="last_row", key_display="end G", show=False),
    ]

    def __init__(self, model: ConsoleModel, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.model = model
        self.shown_columns: tuple[Column, ...] = ()
        #: The width the columns were last chosen for.
        self._width = 0
        #: What each displayed row currently shows, to diff against.
        self.rendered: dict[int, dict[str, Cell]] = {}
        self._styles: dict[tuple[str | None, bool, bool], Style] = {}
        self.theme_colour: Callable[[str], str | None] = lambda _name: None
        #: Displayed rows whose shard changed while they were off screen: written once they scroll in.
        self.stale: set[int] = set()
        #: Counters a test or the bench can read to prove updates stay incremental.
        self.cell_updates = 0
        self.rebuilds = 0

    def on_resize(self, event: Resize) -> None:
        # More columns when the terminal grows, fewer when it shrinks; rebuilds only if the set changes.
        if not self.set_width(event.size.width):
            self.write_stale()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.write_stale()

    # -- selection ---------------------------------------------------------------------------------

    @property
    def selected_shard(self) -> int | None:
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return None if key.value is None else int(key.value)

    def select_shard(self, sid: int | None) -> None:
        if sid is None or sid not in self.rendered:
            return
        try:
            index = self.get_row_index(str(sid))
        except RowDoesNotExist:
            return
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False)

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0, animate=False)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def on_screen(self) -> set[int]:
        """Shard ids of the rows currently inside the viewport."""
        header = self.header_height if self.show_header else 0
        first = int(self.scroll_y)
        last = min(self.row_count, first + max(0, self.size.height - header) + 1)
        visible: set[int] = set()
        for index in range(first, last):
            try:
                key = self.coordinate_to_cell_key(Coordinate(index, 0)).row_key
            except CellDoesNotExist:
                continue
            if key.value is not None:
                visible.add(int(key.value))
        return visible

    # -- rendering ---------------------------------------------------------------------------------

    def reset_styles(self) -> None:
        self._styles.clear()

    def _style(self, cell: Cell) -> Style:
        key = (cell.style, cell.bold, cell.reverse)
        style = self._styles.get(key)
        if style is None:
            colour = self.theme_colour(cell.style) if cell.style else None
            style = Style(color=colour, bold=cell.bold or None, reverse=cell.reverse or None)
            self._styles[key] = style
        return style

    def _render(self, sid: int, key: str, cell: Cell) -> Text | IdCell:
        text = Text(cell.text, style=self._style(cell), no_wrap=True, overflow="ellipsis", end="")
        return IdCell(sid, text) if key == "id" else text

    def _row_values(self, sid: int, cells: dict[str, Cell]) -> list[Text | IdCell]:
        return [self._render(sid, c.key, cells[c.key]) for c in self.shown_columns]

    # -- structure ---------------------------------------------------------------------------------

    def set_width(self, width: int) -> bool:
        """Pick the columns for ``width``; rebuild only if the set changed. True if it did."""
        self._width = width
        columns = columns_for_width(width, self.model.shown_columns())
        if columns == self.shown_columns:
            return False
        selected = self.selected_shard
        self.shown_columns = columns
        self.clear(columns=True)
        for column in columns:
            self.add_column(self._label(column), width=column.width, key=column.key)
        self.rendered.clear()
        self.rebuild(selected)
        return True

    def refresh_columns(self) -> bool:
        """Show the columns the model now wants (after the column chooser). True if they changed."""
        return self.set_width(self._width)

    def _label(self, column: Column) -> str:
        key = self.model.sort_key
        if SORT_COLUMN.get(key) != column.key:
            return column.label
        return column.label + sort_arrow(key, self.model.sort_reverse)

    def header_labels(self) -> list[str]:
        """The column headers as shown, sort arrow included."""
        return [column.label.plain for column in self.ordered_columns]

    def update_sort_arrow(self) -> None:
        """Put the arrow on the sorted column's header (and take it off the others)."""
        changed = False
        for column in self.shown_columns:
            label = self._label(column)
            shown = self.columns.get(ColumnKey(column.key))
            if shown is not None and shown.label.plain != label:
                shown.label = Text(label)
                changed = True
        if changed:
            self._clear_caches()
            self.refresh()

    def rebuild(self, selected: int | None = None) -> None:
        """Clear and add every visible row in order (filter change, theme change, column change)."""
        if selected is None:
            selected = self.selected_shard
        self.model.take_dirty()
        self.clear()
        self.rendered.clear()
        self.stale.clear()
        self.rebuilds += 1
        for sid in self.model.visible_ids():
            cells = self.model.cells(sid)
            self.add_row(*self._row_values(sid, cells), key=str(sid))
            self.rendered[sid] = cells
        self.select_shard(selected)

    def resort(self) -> None:
        selected = self.selected_shard
        order = {sid: index for index, sid in enumerate(self.model.visible_ids())}
        last = len(order)
        self.sort("id", key=lambda cell: order.get(cell.sid, last))
        self.update_sort_arrow()
        self.select_shard(selected)

    # -- the tick ----------------------------------------------------------------------------------

    def flush(self) -> int:
        """Push what changed since the last flush. Returns the number of cells written.

        Rows are added, removed and ordered for every change, but a changed row's cells are written only
        while it is on screen: on a busy fleet every row changes every tick, and writing 5,000 rows into
        the DataTable cost ~180 ms of the event loop the shards run on. Off-screen rows wait in ``stale``
        and are written when a scroll, a resize or a later flush brings them into view."""
        if not self.shown_columns:
            return 0
        model = self.model
        selected = self.selected_shard
        dirty = model.take_dirty()
        stale = self.stale
        added = removed = 0
        to_remove: list[int] = []
        for sid in dirty:
            displayed = sid in self.rendered
            if sid not in model.rows or not model.matches(sid):
                if displayed:
                    to_remove.append(sid)
                continue
            if not displayed:
                cells = model.cells(sid)
                self.add_row(*self._row_values(sid, cells), key=str(sid))
                self.rendered[sid] = cells
                added += 1
                continue
            stale.add(sid)
        if len(to_remove) > REBUILD_THRESHOLD:
            self.rebuild()
            return 0
        for sid in to_remove:
            self.remove_row(str(sid))
            del self.rendered[sid]
            stale.discard(sid)
            removed += 1
        if added or (dirty and model.sort_key.value != "id"):
            self.resort()
        elif removed:
            self.select_shard(selected)
        visible = self.on_screen()
        written = self._write_visible_stale(visible)
        shown = {c.key for c in self.shown_columns}
        if shown & {"dispatch_age", "ack_age"}:
            # Ages change every second on every row; refresh them only where the operator can see.
            for sid in visible - dirty:
                if sid in self.rendered:
                    written += self._write(sid, model.age_cells(sid), shown)
        self.cell_updates += written
        return written

    def write_stale(self) -> int:
        """Write the stale rows that are now on screen (after a scroll or a resize)."""
        if not self.stale or not self.shown_columns:
            return 0
        written = self._write_visible_stale(self.on_screen())
        self.cell_updates += written
        return written

    def _write_visible_stale(self, visible: set[int]) -> int:
        stale = self.stale
        due = stale & visible
        if not due:
            return 0
        shown = {c.key for c in self.shown_columns}
        model = self.model
        written = 0
        for sid in due:
            stale.discard(sid)
            if sid in model.rows and sid in self.rendered:
                written += self._write(sid, model.cells(sid), shown)
        return written

    def _write(self, sid: int, cells: dict[str, Cell], shown: Iterable[str]) -> int:
        before = self.rendered[sid]
        written = 0
        row_key = str(sid)
        for key in shown:
            cell = cells.get(key)
            if cell is None or before.get(key) == cell:
                continue
            self.update_cell(row_key, key, self._render(sid, key, cell))
            before[key] = cell
            written += 1
        return written
