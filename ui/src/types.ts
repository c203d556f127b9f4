export interface Totals {
  requests: number;
  errors: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
}

export interface UsageReport {
  since: string | null;
  until: string | null;
  providers: Record<string, Totals>;
  models: (Totals & { provider: string; model_id: string })[];
}

export interface TimeseriesSeries extends Totals {
  name: string;
  requests: number;
  totals: Totals;
}

export interface Timeseries {
  since: string;
  until: string;
  bucket: string;
  group_by: string;
  buckets: string[];
  series: {
    name: string;
    requests: number[];
    errors: number[];
    input_tokens: number[];
    output_tokens: number[];
    cost_usd: number[];
    totals: Totals;
  }[];
  totals: Totals & { latency_p50_ms: number | null; latency_p95_ms: number | null };
}

export interface KeyRecord {
  id: string;
  name: string;
  prefix: string;
  allowed_models: string[];
  rpm: number | null;
  tpm: number | null;
  budget_usd: number | null;
  enabled: boolean;
  created_at: number;
  spend_usd: number;
  last_used_at: number | null;
  requests: number;
}

export type Cleanup = () => void;
export type Page = (main: HTMLElement) => Promise<Cleanup>;
