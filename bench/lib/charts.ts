// The report's charts: Vega-Lite specs built from the benchmarks' result JSON, rendered to SVG by
// Vega (headless: no canvas, no browser). Every plotted number is a value of the JSON rounded to
// two decimals (stats.round), and Vega writes each mark's fields into its aria-label, which is
// how the report's test finds them in the SVG.
import { parse, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

/** One chart of the report: its file name, title, what it shows, and the rows it plots. */
export interface Chart {
  id: string;
  title: string;
  caption: string;
  /** The benchmark whose results it draws. */
  source: string;
  rows: Record<string, string | number>[];
  spec: TopLevelSpec;
}

const WIDTH = 360;
const HEIGHT = 220;

const base = (title: string, rows: Chart["rows"]) => ({
  $schema: "https://vega.github.io/schema/vega-lite/v6.json",
  title,
  data: { values: rows },
  config: { font: "sans-serif", view: { stroke: "#ddd" } },
});

/** Bars of a value per category, grouped by series (side by side), one panel per facet. */
export function groupedBars(o: {
  title: string;
  rows: Chart["rows"];
  category: string;
  value: string;
  series: string;
  facet?: string;
  /** Each facet its own y scale (different units). */
  independentY?: boolean;
  /** A horizontal rule at this value (a goal, or 1 for ratios). */
  rule?: number;
  /** Fields holding each bar's spread (min and max over the rounds), drawn as a whisker. */
  spread?: { low: string; high: string };
}): TopLevelSpec {
  const offset = o.series === o.category ? {} : { xOffset: { field: o.series, type: "nominal", sort: null } };
  const layer = {
    layer: [
      {
        mark: { type: "bar" },
        encoding: {
          x: { field: o.category, type: "nominal", axis: { labelAngle: -30, labelLimit: 240 }, sort: null },
          // Side by side within a category; a series that is the category needs no offset.
          ...offset,
          y: { field: o.value, type: "quantitative", title: o.value },
          color: {
            field: o.series,
            type: "nominal",
            sort: null,
            ...(o.series === o.category ? { legend: null } : {}),
          },
        },
      },
      ...(o.spread === undefined
        ? []
        : [
            {
              mark: { type: "rule", color: "#333" },
              encoding: {
                x: { field: o.category, type: "nominal", sort: null },
                ...offset,
                y: { field: o.spread.low, type: "quantitative" },
                y2: { field: o.spread.high },
              },
            },
          ]),
      ...(o.rule === undefined
        ? []
        : [
            {
              mark: { type: "rule", color: "#c33", strokeDash: [4, 3] },
              encoding: { y: { datum: o.rule } },
            },
          ]),
    ],
  };
  if (!o.facet) {
    return { ...base(o.title, o.rows), width: WIDTH, height: HEIGHT, ...layer } as TopLevelSpec;
  }
  return {
    ...base(o.title, o.rows),
    facet: { column: { field: o.facet, type: "nominal", sort: null, title: null } },
    spec: { width: Math.round(WIDTH * 0.7), height: HEIGHT, ...layer },
    ...(o.independentY ? { resolve: { scale: { y: "independent" } } } : {}),
  } as TopLevelSpec;
}

/** Lines of a value over a log-scaled x, one per series, one panel per facet. */
export function scaleLines(o: {
  title: string;
  rows: Chart["rows"];
  x: string;
  value: string;
  series: string;
  facet: string;
  /** Fields holding each point's spread (min and max over the rounds), drawn as a whisker. */
  spread?: { low: string; high: string };
}): TopLevelSpec {
  const x = { field: o.x, type: "quantitative", scale: { type: "log" } };
  const color = { field: o.series, type: "nominal", sort: null };
  return {
    ...base(o.title, o.rows),
    facet: { column: { field: o.facet, type: "nominal", sort: null, title: null } },
    spec: {
      width: Math.round(WIDTH * 0.8),
      height: HEIGHT,
      layer: [
        {
          mark: { type: "line", point: true },
          encoding: { x, y: { field: o.value, type: "quantitative", title: o.value }, color },
        },
        ...(o.spread === undefined
          ? []
          : [
              {
                mark: { type: "rule" },
                encoding: {
                  x,
                  y: { field: o.spread.low, type: "quantitative" },
                  y2: { field: o.spread.high },
                  color,
                },
              },
            ]),
      ],
    },
    resolve: { scale: { y: "independent" } },
  } as TopLevelSpec;
}

/** Every sample as a tick plus a box (quartiles, whiskers min to max) per series, one row each. */
export function distribution(o: {
  title: string;
  rows: Chart["rows"];
  value: string;
  series: string;
}): TopLevelSpec {
  return {
    ...base(o.title, o.rows),
    width: WIDTH,
    height: { step: 34 },
    layer: [
      {
        mark: { type: "boxplot", extent: "min-max", size: 18, opacity: 0.35 },
        encoding: {
          y: { field: o.series, type: "nominal", sort: null },
          x: { field: o.value, type: "quantitative", scale: { type: "log" } },
        },
      },
      {
        mark: { type: "tick", thickness: 1, size: 14, opacity: 0.7 },
        encoding: {
          y: { field: o.series, type: "nominal", sort: null },
          x: { field: o.value, type: "quantitative" },
          color: { field: o.series, type: "nominal", sort: null, legend: null },
        },
      },
    ],
  } as TopLevelSpec;
}

/** Renders a Vega-Lite spec to a standalone SVG document. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
