/** Repository health: check, forget, prune (filled in below). */
export async function cmdCheck(_args: string[]): Promise<number> {
  throw new Error('check: not built yet');
}
export async function cmdForget(_args: string[]): Promise<number> {
  throw new Error('forget: not built yet');
}
export async function cmdPrune(_args: string[]): Promise<number> {
  throw new Error('prune: not built yet');
}
