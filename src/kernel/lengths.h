/* Sequences of different lengths (forward.h, train.h: `lengths`), as
 * cuDNN and PyTorch run a PackedSequence: rows are sorted longest first,
 * so the rows that have step t are the leading active[t] = #{b : lengths[b]
 * > t} rows (the PackedSequence's batch_sizes), and each step runs on
 * those rows only.  A row's work never depends on which other rows run
 * with it (tiles.h), so its results are those of a call on its own.
 */
#ifndef FASTLSTM_LENGTHS_H
#define FASTLSTM_LENGTHS_H

#include <stddef.h>

/* active[t] for t < T_, from lengths[B] (sorted, longest first). */
static inline void fl_active_rows(const ptrdiff_t *lengths, ptrdiff_t B, ptrdiff_t T_,
                                  ptrdiff_t *active)
{
    ptrdiff_t b = B;
    for (ptrdiff_t t = 0; t < T_; ++t) {
        while (b > 0 && lengths[b - 1] <= t)
            --b;
        active[t] = b;
    }
}

/* How many of rows r0 .. r0 + rows have step t (a leading part of them);
 * all of them without lengths (active NULL). */
static inline ptrdiff_t fl_rows_at(const ptrdiff_t *active, ptrdiff_t t, ptrdiff_t r0,
                                   ptrdiff_t rows)
{
    if (active == NULL)
        return rows;
    ptrdiff_t n = active[t] - r0;
    return n < 0 ? 0 : n > rows ? rows : n;
}

/* How many of steps t0 .. t0 + tc row b has (the leading ones). */
static inline ptrdiff_t fl_steps_of(const ptrdiff_t *lengths, ptrdiff_t b, ptrdiff_t t0,
                                    ptrdiff_t tc)
{
    if (lengths == NULL)
        return tc;
    ptrdiff_t n = lengths[b] - t0;
    return n < 0 ? 0 : n > tc ? tc : n;
}

/* The part [*i0, *i1) of a chunk of `steps` steps (step s at time t0 + s,
 * or t0 - s backwards) and `rows` rows that has steps: along time, the
 * steps row o has (leading ones, or backwards trailing ones); along the
 * rows, the rows step o has (leading ones). */
static inline void fl_chunk_span(const ptrdiff_t *lengths, ptrdiff_t rows, ptrdiff_t steps,
                                 ptrdiff_t t0, int backwards, int along_time, ptrdiff_t o,
                                 ptrdiff_t *i0, ptrdiff_t *i1)
{
    if (along_time) {
        if (backwards) {          /* t0 - s < lengths[o]: s > t0 - lengths[o] */
            ptrdiff_t first = t0 - lengths[o] + 1;
            *i0 = first < 0 ? 0 : first > steps ? steps : first;
            *i1 = steps;
        } else {
            *i0 = 0;
            *i1 = fl_steps_of(lengths, o, t0, steps);
        }
    } else {
        ptrdiff_t t = backwards ? t0 - o : t0 + o, n = 0;
        while (n < rows && lengths[n] > t)
            ++n;
        *i0 = 0;
        *i1 = n;
    }
}

/* first[0 .. parts]: the first row of each of `parts` row groups holding
 * near-equal numbers of steps (the sum of their lengths), so that the
 * threads claiming the groups share the work, not the rows. */
static inline void fl_row_groups(const ptrdiff_t *lengths, ptrdiff_t B, ptrdiff_t parts,
                                 ptrdiff_t *first)
{
    ptrdiff_t total = 0, sum = 0, b = 0;
    for (ptrdiff_t r = 0; r < B; ++r)
        total += lengths[r];
    first[0] = 0;
    for (ptrdiff_t g = 1; g < parts; ++g) {
        while (b < B && (sum + lengths[b]) * parts <= total * g)
            sum += lengths[b++];
        first[g] = b;
    }
    first[parts] = B;
}

#endif /* FASTLSTM_LENGTHS_H */
