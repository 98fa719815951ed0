/* Crash points for the crash tests: sg_crash_point("name") compiles to
 * nothing unless the build defines SG_CRASH_POINTS. */
#ifndef SG_CRASH_H
#define SG_CRASH_H

#ifdef SG_CRASH_POINTS
void sg_crash_point(const char *name);
#else
#define sg_crash_point(name) ((void)0)
#endif

#endif
