// How long a socket moved no bytes either way (idle_timeout_secs): remembers the byte count and
// when it last changed, so the check costs nothing on the data path.
export class IdleMark {
  private bytes = -1;
  private at = 0;

  /** Milliseconds since `totalBytes` last changed, as of `now`. */
  idleMs(totalBytes: number, now: number): number {
    if (totalBytes !== this.bytes) {
      this.bytes = totalBytes;
      this.at = now;
    }
    return now - this.at;
  }
}
