/// <reference path="./interfaces/pie-inferlet-chat.d.ts" />
/// <reference path="./interfaces/pie-inferlet-context.d.ts" />
/// <reference path="./interfaces/pie-inferlet-grammar.d.ts" />
/// <reference path="./interfaces/pie-inferlet-inference.d.ts" />
/// <reference path="./interfaces/pie-inferlet-messaging.d.ts" />
/// <reference path="./interfaces/pie-inferlet-model.d.ts" />
/// <reference path="./interfaces/pie-inferlet-output.d.ts" />
/// <reference path="./interfaces/pie-inferlet-runtime.d.ts" />
/// <reference path="./interfaces/pie-inferlet-session.d.ts" />
/// <reference path="./interfaces/pie-inferlet-types.d.ts" />
declare module 'pie:inferlet/inferlet@0.2.0' {
  export type * as PieInferletChat020 from 'pie:inferlet/chat@0.2.0'; // import pie:inferlet/chat@0.2.0
  export type * as PieInferletContext020 from 'pie:inferlet/context@0.2.0'; // import pie:inferlet/context@0.2.0
  export type * as PieInferletGrammar020 from 'pie:inferlet/grammar@0.2.0'; // import pie:inferlet/grammar@0.2.0
  export type * as PieInferletInference020 from 'pie:inferlet/inference@0.2.0'; // import pie:inferlet/inference@0.2.0
  export type * as PieInferletMessaging020 from 'pie:inferlet/messaging@0.2.0'; // import pie:inferlet/messaging@0.2.0
  export type * as PieInferletModel020 from 'pie:inferlet/model@0.2.0'; // import pie:inferlet/model@0.2.0
  export type * as PieInferletOutput020 from 'pie:inferlet/output@0.2.0'; // import pie:inferlet/output@0.2.0
  export type * as PieInferletRuntime020 from 'pie:inferlet/runtime@0.2.0'; // import pie:inferlet/runtime@0.2.0
  export type * as PieInferletSession020 from 'pie:inferlet/session@0.2.0'; // import pie:inferlet/session@0.2.0
  export type * as PieInferletTypes020 from 'pie:inferlet/types@0.2.0'; // import pie:inferlet/types@0.2.0
  /**
  * The invocation's entry point; an error fails the invocation with its message.
  */
  export function run(): void;
  export type Result<T, E> = { tag: 'ok', val: T } | { tag: 'err', val: E };
}
