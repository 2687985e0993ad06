/* Callgrind client requests, callable from Python through ctypes.
 *
 * Why a C helper: the client requests are magic instruction sequences that
 * only C (inline asm in callgrind.h) can emit. With them the driver runs
 * under --instr-atstart=no, so interpreter start-up and imports run
 * uninstrumented (fast), and each measured phase is zeroed and dumped on its
 * own: one valgrind process measures every hot path. Outside valgrind every
 * request is a no-op, so the driver also runs natively (for its own tests).
 */
#include <valgrind/callgrind.h>

int cg_running(void) { return RUNNING_ON_VALGRIND; }
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
