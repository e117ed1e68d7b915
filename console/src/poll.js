// Polling that keeps to the API's budget: one request at a time, each started at least
// intervalMs after the previous one started, none while the tab is hidden, none after stop().

// Timers fire a little early or late and a request starts a moment after its tick: starts are
// spaced this much more than the interval so that, as the API sees them, they never come closer.
const SPACING_MARGIN_MS = 50;

export class Poller {
  /**
   * request(): a promise; onResult(value) returns false to stop polling (a terminal job);
   * onError(error) is told and polling goes on at the same pace.
   */
  constructor({ request, onResult, onError = () => {}, intervalMs }) {
    this.request = request;
    this.onResult = onResult;
    this.onError = onError;
    this.intervalMs = intervalMs;
    this.timer = null;
    this.lastStart = -Infinity;
    this.running = false;
    this.inFlight = false;
    this.onVisibility = () => {
      if (!document.hidden) this.schedule();
    };
  }

  start() {
    this.running = true;
    document.addEventListener("visibilitychange", this.onVisibility);
    this.schedule();
    return this;
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
    document.removeEventListener("visibilitychange", this.onVisibility);
  }

  /** Ask for a fresh answer as soon as the interval allows (after a user action). */
  soon() {
    this.schedule();
  }

  schedule() {
    if (!this.running || this.inFlight || document.hidden) return;
    clearTimeout(this.timer);
    const wait = Math.max(0, this.lastStart + this.intervalMs + SPACING_MARGIN_MS - performance.now());
    this.timer = setTimeout(() => this.tick(), wait);
  }

  async tick() {
    this.timer = null;
    if (!this.running || this.inFlight || document.hidden) return;
    this.inFlight = true;
    this.lastStart = performance.now();
    let goOn = true;
    try {
      goOn = (await this.request().then((value) => (this.running ? this.onResult(value) : false))) !== false;
    } catch (error) {
      if (this.running) this.onError(error);
    } finally {
      this.inFlight = false;
    }
    if (goOn) this.schedule();
    else this.stop();
  }
}
