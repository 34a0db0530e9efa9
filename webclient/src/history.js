// The call history: the last calls, newest first, kept in localStorage
// (or any object with getItem/setItem/removeItem).

export const HISTORY_KEY = 'switchboard.history';
export const HISTORY_LIMIT = 20;

const OUTCOMES = new Set(['answered', 'missed', 'declined', 'busy', 'failed', 'cancelled']);

export function createHistory(storage, { key = HISTORY_KEY, limit = HISTORY_LIMIT } = {}) {
  function list() {
    let raw;
    try {
      raw = JSON.parse(storage.getItem(key) || '[]');
    } catch {
      return []; // unreadable: start afresh rather than break the page
    }
    return Array.isArray(raw) ? raw.filter(valid).slice(0, limit) : [];
  }

  function save(entries) {
    try {
      storage.setItem(key, JSON.stringify(entries));
    } catch {
      // Storage full or disabled: the history is a convenience.
    }
  }

  return {
    list,
    add(entry) {
      const e = {
        direction: entry.direction === 'in' ? 'in' : 'out',
        peer: String(entry.peer || ''),
        target: String(entry.target || ''),
        startedAt: Number(entry.startedAt) || 0,
        duration: Math.max(0, Math.round(Number(entry.duration) || 0)),
        outcome: OUTCOMES.has(entry.outcome) ? entry.outcome : 'failed',
      };
      const entries = [e, ...list()].slice(0, limit);
      save(entries);
      return entries;
    },
    clear() {
      try {
        storage.removeItem(key);
      } catch {
        // nothing to do
      }
    },
  };
}

function valid(e) {
  return e && typeof e === 'object' && typeof e.peer === 'string' && typeof e.startedAt === 'number';
}
