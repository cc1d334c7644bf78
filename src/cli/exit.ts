// nkit's exit codes (documented in docs/operations.md):
//   0 ok · 1 failure · 2 usage error · 3 nkitd unreachable · 4 `nkit doctor` found failures
export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, UNREACHABLE: 3, DOCTOR_FAILED: 4 } as const;
