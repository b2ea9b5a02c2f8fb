/**
 * The worker table: sortable headers (buttons, with aria-sort), rows reused
 * per worker id so that a once-a-second refresh only touches changed cells.
 * Every value goes in through textContent: worker names are user-supplied.
 */
import type { Status, WorkerStatus } from "./status.ts";
import {
  COLUMNS, SILENT_AFTER_MS, formatDigest, lagExceedsBound, maxClock, nextSort, sortWorkers,
  workerLag, workerRowClass, type SortKey, type SortState, type TableContext,
} from "./view.ts";

export class WorkerTable {
  readonly #tbody: HTMLTableSectionElement;
  readonly #headers = new Map<SortKey, HTMLTableCellElement>();
  readonly #rows = new Map<string, HTMLTableRowElement>();
  #sort: SortState = { key: null, dir: "asc" };
  #last: Status | null = null;

  constructor(table: HTMLTableElement) {
    const headRow = document.createElement("tr");
    for (const column of COLUMNS) {
      const th = document.createElement("th");
      th.scope = "col";
      if (column.numeric) th.classList.add("num");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = column.label;
      button.title = `Sort by ${column.label.toLowerCase()}`;
      button.addEventListener("click", () => {
        this.#sort = nextSort(this.#sort, column.key);
        if (this.#last !== null) this.render(this.#last);
      });
      th.append(button);
      headRow.append(th);
      this.#headers.set(column.key, th);
    }
    table.createTHead().append(headRow);
    this.#tbody = table.tBodies[0] ?? table.createTBody();
  }

  render(status: Status): void {
    this.#last = status;
    const ctx: TableContext = {
      maxClock: maxClock(status),
      mode: status.consistency.mode,
      staleness: status.consistency.staleness,
    };
    for (const [key, th] of this.#headers) {
      if (this.#sort.key === key) th.setAttribute("aria-sort", this.#sort.dir === "asc" ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }

    const ordered = sortWorkers(status.workers, this.#sort, ctx);
    const seen = new Set<string>();
    const rows: HTMLTableRowElement[] = [];
    for (const worker of ordered) {
      if (seen.has(worker.id)) continue; // a duplicate id would otherwise share one row
      seen.add(worker.id);
      let row = this.#rows.get(worker.id);
      if (row === undefined) {
        row = this.#createRow();
        this.#rows.set(worker.id, row);
      }
      this.#fillRow(row, worker, ctx);
      rows.push(row);
    }
    for (const [id, row] of this.#rows) {
      if (!seen.has(id)) {
        row.remove();
        this.#rows.delete(id);
      }
    }
    // Reorder only when needed: moving rows would lose a text selection.
    const current = Array.from(this.#tbody.rows);
    if (current.length !== rows.length || current.some((r, i) => r !== rows[i])) this.#tbody.replaceChildren(...rows);
  }

  #createRow(): HTMLTableRowElement {
    const row = document.createElement("tr");
    COLUMNS.forEach((column, i) => {
      const cell = i === 0 ? document.createElement("th") : document.createElement("td");
      if (i === 0) cell.setAttribute("scope", "row");
      cell.className = `col-${column.key}${column.numeric ? " num" : ""}`;
      row.append(cell);
    });
    return row;
  }

  #fillRow(row: HTMLTableRowElement, worker: WorkerStatus, ctx: TableContext): void {
    const stateClass = workerRowClass(worker.state);
    const rowClass = stateClass === "" ? "worker" : `worker ${stateClass}`;
    if (row.className !== rowClass) row.className = rowClass;
    COLUMNS.forEach((column, i) => {
      const cell = row.cells[i];
      if (cell === undefined) return;
      const text = column.text(worker, ctx);
      if (cell.textContent !== text) cell.textContent = text;
    });
    const lagCell = row.cells[COLUMNS.findIndex((c) => c.key === "lag")];
    lagCell?.classList.toggle("over-bound", lagExceedsBound(workerLag(worker, ctx.maxClock), ctx.mode, ctx.staleness));
    const seenCell = row.cells[COLUMNS.findIndex((c) => c.key === "lastSeenMs")];
    seenCell?.classList.toggle("silent", (worker.lastSeenMs ?? 0) > SILENT_AFTER_MS && worker.state !== "left" && worker.state !== "dropped");
    const stateCell = row.cells[COLUMNS.findIndex((c) => c.key === "state")];
    if (stateCell !== undefined) stateCell.dataset["state"] = worker.state;
    const digestCell = row.cells[COLUMNS.findIndex((c) => c.key === "digest")];
    if (digestCell !== undefined) digestCell.title = formatDigest(worker.digest).full;
  }
}
