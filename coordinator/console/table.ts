/**
 * The worker table: sortable headers (buttons, with aria-sort), rows reused
 * per worker id so that a refresh only touches changed cells, and a last
 * column with a Drop button for workers still in the view (`onDrop(id)`; the
 * page asks for confirmation and the token). Every value goes in through
 * textContent: worker names are user-supplied.
 */
import type { Status, WorkerStatus } from "./status.ts";
import {
  COLUMNS, SILENT_AFTER_MS, canDrop, formatDigest, lagExceedsBound, maxClock, nextSort, sortWorkers,
  workerLag, workerRowClass, type SortKey, type SortState, type TableContext,
} from "./view.ts";

export class WorkerTable {
  readonly #tbody: HTMLTableSectionElement;
  readonly #headers = new Map<SortKey, HTMLTableCellElement>();
  readonly #rows = new Map<string, HTMLTableRowElement>();
  #sort: SortState = { key: null, dir: "asc" };
  #last: Status | null = null;
  readonly #onDrop: (id: string, label: string) => void;

  constructor(table: HTMLTableElement, onDrop: (id: string, label: string) => void) {
    this.#onDrop = onDrop;
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
    const actions = document.createElement("th");
    actions.scope = "col";
    actions.textContent = "Action";
    headRow.append(actions);
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
    const action = document.createElement("td");
    action.className = "col-action";
    const drop = document.createElement("button");
    drop.type = "button";
    drop.className = "drop";
    drop.textContent = "Drop";
    drop.addEventListener("click", () => {
      const id = row.dataset["worker"];
      if (id !== undefined) this.#onDrop(id, row.dataset["label"] ?? id);
    });
    action.append(drop);
    row.append(action);
    return row;
  }

  #fillRow(row: HTMLTableRowElement, worker: WorkerStatus, ctx: TableContext): void {
    const stateClass = workerRowClass(worker.state);
    const rowClass = stateClass === "" ? "worker" : `worker ${stateClass}`;
    if (row.className !== rowClass) row.className = rowClass;
    const label = worker.name != null && worker.name !== "" ? `${worker.id} (${worker.name})` : worker.id;
    row.dataset["worker"] = worker.id;
    row.dataset["label"] = label;
    const drop = row.querySelector<HTMLButtonElement>("button.drop");
    if (drop !== null) {
      drop.hidden = !canDrop(worker.state);
      drop.setAttribute("aria-label", `Drop ${label}`);
    }
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
